// Retry: a refused send goes again under its client_msg_id; a failed reply is asked for again.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChangeSet } from '../src/model/changes.js';
import { canRetryReply, markRetrying, retryReplyData } from '../src/model/messages.js';
import { beginSend, markFailed, queueSend, requeueFailed, sendData } from '../src/model/pending.js';
import { convState } from '../src/model/state.js';
import { CID, KEY, ME, frame, orderOf, reply, signedInState, stored, streamChunks } from '../testing/fixtures.js';

describe('retrying a refused send', () => {
  test('keeps the message and its client_msg_id; Retry queues the very same send again', () => {
    const state = signedInState();
    const c = convState(state, CID);
    queueSend(state, c, { clientMsgId: 'c1', text: 'hello', assistantId: 'demo' }, new ChangeSet());
    const first = sendData('c1', beginSend(state, 'c1'));
    const failed = new ChangeSet();
    markFailed(state, 'c1', 'Slow down: try again in 3 s.', failed);
    assert.equal(c.messages.get('tmp-c1')._failed, 'Slow down: try again in 3 s.');
    assert.deepEqual(failed.notices, [], 'the error shows on the message only');
    assert.equal(state.pending.has('c1'), false);

    const ch = new ChangeSet();
    assert.equal(requeueFailed(state, c, 'tmp-c1', ch), 'c1');
    assert.equal(c.messages.get('tmp-c1')._failed, undefined, 'shown as sending again');
    assert.deepEqual(ch.messagesOf(KEY), ['tmp-c1']);
    const again = beginSend(state, 'c1');
    assert.ok(again, 'not marked in flight by the earlier try');
    assert.deepEqual(sendData('c1', again), first, 'same content, assistant and client_msg_id: stored once');
    assert.equal(requeueFailed(state, c, 'tmp-c1', new ChangeSet()), null, 'only a failed message can be retried');
  });

  test('the echo of the retried send replaces the copy as usual', () => {
    const state = signedInState();
    const c = convState(state, CID);
    queueSend(state, c, { clientMsgId: 'c2', text: 'hi', assistantId: undefined }, new ChangeSet());
    markFailed(state, 'c2', 'nope', new ChangeSet());
    requeueFailed(state, c, 'tmp-c2', new ChangeSet());
    frame(state, 'message_received', { message: stored(8, 8, { sender_id: ME, content: 'hi', client_msg_id: 'c2' }) });
    assert.equal(c.messages.has('tmp-c2'), false);
    assert.equal(state.pending.size, 0);
  });
});

describe('retrying a failed reply', () => {
  function failedReply() {
    const state = signedInState();
    frame(state, 'message_received', { message: stored(1, 1, { sender_id: ME }) });
    streamChunks(state, 100, ['Hal'], { replyTo: 1 });
    frame(state, 'stream_error', { message_id: 100, code: 'PROVIDER_UNAVAILABLE', message: 'down' });
    const c = state.convs.get(KEY);
    return { state, c, m: c.messages.get('100') };
  }

  test('asks for a new reply to the same message', () => {
    const { c, m } = failedReply();
    assert.equal(canRetryReply(c, m), true);
    assert.deepEqual(retryReplyData(m), { conversation_id: CID, message_id: 1, assistant_id: 'demo' });
  });

  test('is offered once: not while retrying, not once a newer reply to that message exists', () => {
    const { state, c, m } = failedReply();
    markRetrying(c, '100', true, new ChangeSet());
    assert.equal(canRetryReply(c, m), false, 'pressed already');
    markRetrying(c, '100', false, new ChangeSet(), 'Too many replies at once');
    assert.equal(canRetryReply(c, m), true, 'a refused retry can be retried');
    assert.equal(m.error, 'Too many replies at once', 'the refusal shows where the error was');
    frame(state, 'message_added', { message: reply(100, 2, { reply_to: 1, status: 'error', content: 'Hal' }) });
    streamChunks(state, 101, ['Hello'], { replyTo: 1 });
    assert.equal(canRetryReply(c, m), false, 'a reply is being written');
    assert.deepEqual(orderOf(state), [1, 100, 101], 'the retry streams below the failed reply');
    frame(state, 'message_added', { message: reply(101, 3, { reply_to: 1, content: 'Hello' }) });
    assert.equal(canRetryReply(c, m), false, 'the newer reply answered it');
  });

  test('a complete or cancelled reply offers no Retry', () => {
    const state = signedInState();
    frame(state, 'message_added', { message: reply(5, 2, { reply_to: 1 }) });
    const c = state.convs.get(KEY);
    assert.equal(canRetryReply(c, c.messages.get('5')), false);
  });
});
