// Messages: ordering by seq, merging by id, seq dedup, history pages, interrupted replies.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChangeSet } from '../src/model/changes.js';
import {
  addNewestPage, addOlderPage, awaitingReply, dropMessage, markInterrupted, oldestSeq, streamingReply, upsertMessage,
} from '../src/model/messages.js';
import { convState } from '../src/model/state.js';
import { CID, KEY, frame, orderOf, reply, signedInState, stored, streamChunks } from '../testing/fixtures.js';

const page = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => stored(from + i, from + i));

describe('messages', () => {
  test('the same message by id (number or string) is merged, not duplicated', () => {
    const state = signedInState();
    frame(state, 'message_received', { message: stored(1, 1, { content: 'first' }) });
    frame(state, 'message_added', { message: { ...stored('1', 1), content: 'edited' } });
    const c = state.convs.get(KEY);
    assert.equal(c.messages.size, 1);
    assert.equal(c.messages.get('1').content, 'edited');
  });

  test('replayed messages after a reconnect are not duplicated (seq dedup)', () => {
    const state = signedInState();
    for (const m of page(1, 3)) frame(state, 'message_received', { message: m });
    for (const m of page(2, 5)) frame(state, 'message_received', { message: m }); // replay since_seq=1 overlaps
    assert.deepEqual(orderOf(state), [1, 2, 3, 4, 5]);
    assert.equal(state.convs.get(KEY).lastSeq, 5);
  });

  test('a message whose status changed is applied even with the same seq', () => {
    const state = signedInState();
    frame(state, 'message_received', { message: reply(100, 2, { status: 'streaming', content: 'Hel' }) });
    const ch = frame(state, 'message_received', { message: reply(100, 2, { status: 'complete', content: 'Hello' }) });
    assert.equal(state.convs.get(KEY).messages.get('100').status, 'complete');
    assert.ok(ch.lists.has(KEY));
  });

  test('order: by seq; a reply without seq right after its parent; unsent last by arrival', () => {
    const state = signedInState();
    frame(state, 'message_received', { message: stored(3, 3) });
    frame(state, 'message_received', { message: stored(1, 1) });
    frame(state, 'stream_start', { conversation_id: CID, message_id: 'r', reply_to: 1 });
    frame(state, 'stream_start', { conversation_id: CID, message_id: 'orphan' });
    frame(state, 'stream_start', { conversation_id: CID, message_id: 'orphan2', reply_to: 'unknown' });
    assert.deepEqual(orderOf(state), [1, 'r', 3, 'orphan', 'orphan2']);
  });

  test('history: the newest page marks the conversation loaded and knows if there is more', () => {
    const state = signedInState();
    const c = convState(state, CID);
    const ch = new ChangeSet();
    addNewestPage(state, c, page(51, 100), 50, ch);
    assert.equal(c.loaded, true);
    assert.equal(c.hasMore, true);
    assert.equal(c.lastSeq, 100);
    assert.equal(oldestSeq(c), 51);
    assert.ok(ch.lists.has(KEY));
    const small = convState(state, 43);
    addNewestPage(state, small, [...page(1, 3), reply('r', null, { status: 'streaming' })], 50, new ChangeSet());
    assert.equal(small.hasMore, false, 'a short page is everything');
  });

  test('history: an older page goes before, and a short one ends the paging', () => {
    const state = signedInState();
    const c = convState(state, CID);
    addNewestPage(state, c, page(31, 80), 50, new ChangeSet());
    addOlderPage(state, c, page(1, 30), 30, new ChangeSet());
    assert.equal(c.hasMore, true);
    addOlderPage(state, c, [], 30, new ChangeSet());
    assert.equal(c.hasMore, false);
    assert.deepEqual(orderOf(state), page(1, 80).map((m) => m.id));
    assert.equal(oldestSeq(convState(state, 44)), null);
  });

  test('history merged into a live stream keeps the streamed text', () => {
    const state = signedInState();
    streamChunks(state, 100, ['abc', 'def']);
    const c = state.convs.get(KEY);
    upsertMessage(state, c, reply(100, 4, { status: 'streaming', content: 'abc' }), new ChangeSet());
    assert.equal(c.messages.get('100').content, 'abcdef');
    assert.equal(c.messages.get('100').seq, 4);
  });

  test('replies that ended while we were away become interrupted unless stored as finished', () => {
    const state = signedInState();
    streamChunks(state, 100, ['partial']);
    streamChunks(state, 101, ['other']);
    const c = state.convs.get(KEY);
    c.streams.delete('100'); // as the stored copy would
    const ch = new ChangeSet();
    markInterrupted(c, ['100', '101', 'gone'], ch);
    assert.equal(c.messages.get('100').status, 'interrupted');
    assert.equal(c.messages.get('101').status, 'streaming', 'still has a live stream');
    assert.deepEqual(ch.messagesOf(KEY), ['100']);
  });

  test('streamingReply / awaitingReply drive Stop and the typing row', () => {
    const state = signedInState();
    const c = convState(state, CID);
    assert.equal(streamingReply(c), null);
    c.assistantTyping = true;
    assert.equal(awaitingReply(c), true);
    streamChunks(state, 100, ['x']);
    assert.equal(streamingReply(c).id, 100);
    assert.equal(awaitingReply(c), false, 'the reply itself shows the dots now');
    assert.equal(streamingReply(null), null);
  });

  test('dropMessage removes a failed message for Retry', () => {
    const state = signedInState();
    frame(state, 'message_received', { message: stored(1, 1) });
    const ch = new ChangeSet();
    dropMessage(state.convs.get(KEY), '1', ch);
    assert.deepEqual(orderOf(state), []);
    assert.ok(ch.lists.has(KEY));
  });
});
