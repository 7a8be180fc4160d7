// applyFrame, one frame type at a time: what it does to the model and what it reports.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChangeSet } from '../src/model/changes.js';
import { applyFrame, errorText } from '../src/model/frames.js';
import { queueSend } from '../src/model/pending.js';
import { convState } from '../src/model/state.js';
import { CID, KEY, ME, OTHER, frame, orderOf, reply, signedInState, stored, streamChunks } from '../testing/fixtures.js';

describe('applyFrame', () => {
  test('returns an empty ChangeSet for pong and unknown frames, and changes nothing', () => {
    const state = signedInState();
    for (const type of ['pong', 'no_such_frame']) {
      const ch = applyFrame(state, { type, data: { conversation_id: CID } });
      assert.ok(ch instanceof ChangeSet);
      assert.equal(ch.sidebar || ch.composer || ch.reset, false);
      assert.equal(ch.lists.size + ch.messages.size + ch.notices.length + ch.effects.length, 0);
    }
    assert.equal(state.convs.size, 0, 'no conversation cache was created');
  });

  test('tolerates a frame without data', () => {
    const state = signedInState();
    assert.doesNotThrow(() => applyFrame(state, { type: 'stream_content' }));
  });

  describe('auth_success', () => {
    test('asks to rejoin the open conversation, resend elsewhere, and refresh the sidebar', () => {
      const state = signedInState();
      const other = convState(state, 43);
      queueSend(state, other, { clientMsgId: 'c-elsewhere', text: 'hi' }, new ChangeSet());
      queueSend(state, convState(state, CID), { clientMsgId: 'c-here', text: 'yo' }, new ChangeSet());
      const ch = frame(state, 'auth_success', { user_id: ME });
      assert.deepEqual(ch.effects, [
        { type: 'join', convKey: KEY },
        { type: 'send', ids: ['c-elsewhere'] }, // the open one's sends go after its `joined`
        { type: 'refreshConversations' },
      ]);
    });

    test('in a new chat only refreshes (and resends everything pending)', () => {
      const state = signedInState({ open: false });
      assert.deepEqual(frame(state, 'auth_success').effects, [{ type: 'refreshConversations' }]);
      queueSend(state, convState(state, 43), { clientMsgId: 'c1', text: 'x' }, new ChangeSet());
      assert.deepEqual(frame(state, 'auth_success').effects.map((e) => e.type), ['send', 'refreshConversations']);
    });
  });

  describe('joined', () => {
    test('marks the open conversation joined and raises lastSeq to the server seq', () => {
      const state = signedInState();
      const c = convState(state, CID);
      c.joining = true;
      c.lastSeq = 3;
      const ch = frame(state, 'joined', { conversation_id: CID, seq: 10, active_streams: [] });
      assert.equal(c.joined, true);
      assert.equal(c.joining, false);
      assert.equal(c.lastSeq, 10);
      assert.ok(ch.lists.has(KEY));
      assert.equal(ch.composer, true);
      frame(state, 'joined', { conversation_id: CID, seq: 4 });
      assert.equal(c.lastSeq, 10, 'never goes back');
    });

    test('a join answered after switching away does not count as joined', () => {
      const state = signedInState();
      const c = convState(state, 43);
      frame(state, 'joined', { conversation_id: 43, seq: 1 });
      assert.equal(c.joined, false);
    });

    test('creates replies from active_streams with their text so far', () => {
      const state = signedInState();
      const ch = frame(state, 'joined', {
        conversation_id: CID, seq: 2,
        active_streams: [{ message_id: 100, content: 'Hello wor', index: 3 }],
      });
      const c = state.convs.get(KEY);
      const m = c.messages.get('100');
      assert.equal(m.status, 'streaming');
      assert.equal(m.content, 'Hello wor');
      assert.equal(m.assistant_id, 'demo', "the conversation's assistant");
      assert.deepEqual(c.streams.get('100'), { text: 'Hello wor', index: 3 });
      assert.deepEqual(ch.messagesOf(KEY), ['100']);
    });

    test('asks to refresh replies that stopped streaming while we were away', () => {
      const state = signedInState();
      streamChunks(state, 100, ['a', 'b']);
      streamChunks(state, 101, ['c']);
      const ch = frame(state, 'joined', { conversation_id: CID, seq: 5, active_streams: [{ message_id: 101, content: 'c', index: 0 }] });
      assert.deepEqual(ch.effects, [{ type: 'refreshTail', convKey: KEY, stale: ['100'] }]);
    });

    test('asks to resend the unacked sends of this conversation only', () => {
      const state = signedInState();
      const c = convState(state, CID);
      queueSend(state, c, { clientMsgId: 'a', text: 'one' }, new ChangeSet());
      queueSend(state, c, { clientMsgId: 'b', text: 'two' }, new ChangeSet());
      queueSend(state, convState(state, 43), { clientMsgId: 'z', text: 'elsewhere' }, new ChangeSet());
      frame(state, 'ack', { ref: 'r1', client_msg_id: 'a', message_id: 5 });
      const ch = frame(state, 'joined', { conversation_id: CID, seq: 0 });
      assert.deepEqual(ch.effects, [{ type: 'send', ids: ['b'] }]);
    });
  });

  describe('message_received and message_added', () => {
    test('add a message in seq order and report the list change', () => {
      const state = signedInState();
      frame(state, 'message_received', { message: stored(2, 2) });
      const ch = frame(state, 'message_received', { message: stored(1, 1) });
      assert.deepEqual(orderOf(state), [1, 2]);
      assert.ok(ch.lists.has(KEY));
      assert.deepEqual(ch.messagesOf(KEY), ['1']);
      assert.equal(state.convs.get(KEY).lastSeq, 2);
    });

    test('find the conversation from the message when the frame has no conversation_id', () => {
      const state = signedInState();
      frame(state, 'message_added', { message: { ...stored(1, 1), conversation_id: 43 } });
      assert.ok(state.convs.get('43').messages.has('1'));
    });

    test('our own message asks to scroll to it; another member\'s does not', () => {
      const state = signedInState();
      assert.ok(frame(state, 'message_received', { message: stored(1, 1, { sender_id: ME }) }).scroll.has(KEY));
      assert.equal(frame(state, 'message_received', { message: stored(2, 2, { sender_id: OTHER }) }).scroll.size, 0);
    });

    test('a repeated message_received (same seq and status) changes nothing', () => {
      const state = signedInState();
      frame(state, 'message_received', { message: stored(1, 1) });
      const ch = frame(state, 'message_received', { message: { ...stored(1, 1), content: 'tampered' } });
      assert.equal(ch.lists.size, 0);
      assert.equal(state.convs.get(KEY).messages.get('1').content, 'm1');
    });

    test('message_added always applies: the stored text of a finished reply wins', () => {
      const state = signedInState();
      streamChunks(state, 100, ['Hel', 'lo', ' wrld']);
      frame(state, 'message_added', { message: reply(100, 3, { content: 'Hello world', usage: { total_tokens: 5 } }) });
      const c = state.convs.get(KEY);
      const m = c.messages.get('100');
      assert.equal(m.content, 'Hello world');
      assert.equal(m.status, 'complete');
      assert.equal(c.streams.has('100'), false, 'the stream is finished');
      frame(state, 'message_added', { message: reply(100, 3, { content: 'Hello world' }) });
      assert.deepEqual(c.messages.get('100').usage, { total_tokens: 5 }, 'usage is kept when the copy lacks it');
    });

    test('a finished assistant message ends the "assistant is typing" row', () => {
      const state = signedInState();
      frame(state, 'typing_indicator', { conversation_id: CID, user_id: 'assistant', is_typing: true });
      assert.equal(state.convs.get(KEY).assistantTyping, true);
      frame(state, 'message_added', { message: reply(5, 5) });
      assert.equal(state.convs.get(KEY).assistantTyping, false);
    });
  });

  describe('stream frames', () => {
    test('stream_start creates an empty streaming reply placed after the message it answers', () => {
      const state = signedInState();
      frame(state, 'message_received', { message: stored(1, 1, { sender_id: ME }) });
      frame(state, 'message_received', { message: stored(2, 2) });
      const ch = frame(state, 'stream_start', { conversation_id: CID, message_id: 100, assistant_id: 'other', reply_to: 1 });
      const m = state.convs.get(KEY).messages.get('100');
      assert.equal(m.status, 'streaming');
      assert.equal(m.content, '');
      assert.equal(m.assistant_id, 'other');
      assert.deepEqual(orderOf(state), [1, 100, 2]);
      assert.ok(ch.lists.has(KEY));
      assert.deepEqual(ch.messagesOf(KEY), ['100']);
    });

    test('stream_content appends in index order and reports the message', () => {
      const state = signedInState();
      streamChunks(state, 100, ['Hel']);
      const ch = frame(state, 'stream_content', { message_id: 100, content: 'lo', index: 1 });
      assert.equal(state.convs.get(KEY).messages.get('100').content, 'Hello');
      assert.deepEqual(ch.messagesOf(KEY), ['100']);
    });

    test('stream_content without stream_start still shows (a reply that started before we joined)', () => {
      const state = signedInState();
      const ch = frame(state, 'stream_content', { conversation_id: CID, message_id: 100, content: 'Hi', index: 0 });
      assert.equal(state.convs.get(KEY).messages.get('100').content, 'Hi');
      assert.ok(ch.lists.has(KEY), 'a new reply joins the list');
    });

    test('stream_complete finishes the reply with usage and finish reason', () => {
      const state = signedInState();
      streamChunks(state, 100, ['Hi']);
      const ch = frame(state, 'stream_complete', { message_id: 100, usage: { total_tokens: 3 }, finish_reason: 'length' });
      const m = state.convs.get(KEY).messages.get('100');
      assert.equal(m.status, 'complete');
      assert.equal(m.finish_reason, 'length');
      assert.deepEqual(m.usage, { total_tokens: 3 });
      assert.equal(ch.composer, true);
      assert.deepEqual(ch.messagesOf(KEY), ['100']);
    });

    test('stream_complete with finish_reason cancelled is a stop', () => {
      const state = signedInState();
      streamChunks(state, 100, ['Hi']);
      frame(state, 'stream_complete', { message_id: 100, finish_reason: 'cancelled' });
      assert.equal(state.convs.get(KEY).messages.get('100').status, 'cancelled');
    });

    test('stream_error marks the reply failed; the error shows on the reply only, never as a toast too', () => {
      const state = signedInState();
      streamChunks(state, 100, ['Hi']);
      const ch = frame(state, 'stream_error', { message_id: 100, code: 'PROVIDER_ERROR', message: 'upstream down' });
      const m = state.convs.get(KEY).messages.get('100');
      assert.equal(m.status, 'error');
      assert.equal(m.error, 'upstream down');
      assert.deepEqual(ch.notices, [], 'one error shown once: on the reply, with its Retry');
      assert.deepEqual(ch.messagesOf(KEY), ['100']);
      frame(state, 'stream_start', { conversation_id: 43, message_id: 200 });
      assert.deepEqual(frame(state, 'stream_error', { conversation_id: 43, message_id: 200, code: 'X' }).notices, []);
    });

    test('stream_error CANCELLED is a quiet stop', () => {
      const state = signedInState();
      streamChunks(state, 100, ['Hi']);
      const ch = frame(state, 'stream_error', { message_id: 100, code: 'CANCELLED', message: 'stopped' });
      assert.equal(state.convs.get(KEY).messages.get('100').status, 'cancelled');
      assert.deepEqual(ch.notices, []);
    });
  });

  describe('typing_indicator', () => {
    test("the assistant's indicator shows a typing row (list change)", () => {
      const state = signedInState();
      const ch = frame(state, 'typing_indicator', { conversation_id: CID, user_id: 'assistant', is_typing: true });
      assert.equal(state.convs.get(KEY).assistantTyping, true);
      assert.ok(ch.lists.has(KEY));
    });

    test("another member's indicator is recorded with an expiry; ours is ignored", () => {
      const state = signedInState();
      const ch = frame(state, 'typing_indicator', { conversation_id: CID, user_id: OTHER, is_typing: true }, { now: 1000 });
      const c = state.convs.get(KEY);
      assert.deepEqual([...c.typers], [['9', 7000]]);
      assert.ok(ch.typing.has(KEY));
      const mine = frame(state, 'typing_indicator', { conversation_id: CID, user_id: ME, is_typing: true }, { now: 1000 });
      assert.equal(mine.typing.size, 0);
      frame(state, 'typing_indicator', { conversation_id: CID, user_id: OTHER, is_typing: false }, { now: 2000 });
      assert.equal(c.typers.size, 0);
    });
  });

  describe('conversation_updated', () => {
    test('updates the sidebar (and the header when it is the open one)', () => {
      const state = signedInState();
      const ch = frame(state, 'conversation_updated', { conversation: { id: CID, title: 'Renamed' } });
      assert.equal(state.conversations.get(KEY).title, 'Renamed');
      assert.equal(state.conversations.get(KEY).assistant_id, 'demo', 'merged, not replaced');
      assert.equal(ch.sidebar, true);
      assert.equal(ch.header, true);
      const other = frame(state, 'conversation_updated', { conversation: { id: 43, title: 'New one' } });
      assert.equal(other.header, false);
      assert.ok(state.conversations.has('43'));
    });

    test('deleted: the open conversation closes with a notice', () => {
      const state = signedInState();
      convState(state, CID);
      const ch = frame(state, 'conversation_updated', { conversation: { id: CID, deleted: true } });
      assert.equal(state.conversations.has(KEY), false);
      assert.equal(state.convs.has(KEY), false);
      assert.equal(state.activeKey, null);
      assert.equal(ch.closed, KEY);
      assert.equal(ch.reset, true);
      assert.deepEqual(ch.notices, [{ text: 'This conversation was deleted.', kind: 'info' }]);
    });
  });

  describe('ack', () => {
    test("send_message's ack marks the send as stored (not resent)", () => {
      const state = signedInState();
      queueSend(state, convState(state, CID), { clientMsgId: 'c1', text: 'hi' }, new ChangeSet());
      frame(state, 'ack', { ref: 'r1', client_msg_id: 'c1', message_id: 5 });
      assert.equal(state.pending.get('c1').acked, true);
      assert.equal(state.pending.size, 1, 'still waiting for the echo');
    });

    test('other acks change nothing', () => {
      const state = signedInState();
      const ch = frame(state, 'ack', { ref: 'r2', message_id: 5 });
      assert.equal(ch.effects.length + ch.notices.length, 0);
    });
  });

  describe('error', () => {
    test('an unsolicited error becomes a notice; an answer to a request (ref) does not', () => {
      const state = signedInState();
      assert.deepEqual(frame(state, 'error', { code: 'BAD', message: 'Nope' }).notices, [{ text: 'Nope', kind: 'error' }]);
      assert.deepEqual(frame(state, 'error', { code: 'BAD', message: 'Nope', ref: 'r1' }).notices, []);
    });

    test('errorText explains rate limits and falls back to the code', () => {
      assert.equal(errorText({ code: 'RATE_LIMITED', retry_after: 3 }), 'Slow down: try again in 3 s.');
      assert.equal(errorText({ code: 'RATE_LIMITED' }), 'Slow down: try again in a few s.');
      assert.equal(errorText({ code: 'X' }), 'X');
      assert.equal(errorText({}), 'Something went wrong');
    });
  });
});
