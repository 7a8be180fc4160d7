// Streaming replies: chunks in index order, resume from joined.active_streams, nothing twice.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CID, KEY, frame, reply, signedInState, streamChunks } from '../testing/fixtures.js';

const textOf = (state, id = '100') => state.convs.get(KEY).messages.get(id).content;

describe('streams', () => {
  test('a duplicated chunk (same index) is dropped', () => {
    const state = signedInState();
    streamChunks(state, 100, ['w001 ', 'w002 ']);
    const ch = frame(state, 'stream_content', { message_id: 100, content: 'w002 ', index: 1 });
    assert.equal(textOf(state), 'w001 w002 ');
    assert.equal(ch.messages.size, 0, 'nothing to re-render');
  });

  test('a chunk older than the last one held is dropped', () => {
    const state = signedInState();
    streamChunks(state, 100, ['a', 'b', 'c']);
    frame(state, 'stream_content', { message_id: 100, content: 'a', index: 0 });
    assert.equal(textOf(state), 'abc');
  });

  test('chunks without an index count on from the last one', () => {
    const state = signedInState();
    frame(state, 'stream_start', { conversation_id: CID, message_id: 100 });
    frame(state, 'stream_content', { message_id: 100, content: 'x' });
    frame(state, 'stream_content', { message_id: 100, content: 'y' });
    assert.equal(textOf(state), 'xy');
    assert.equal(state.convs.get(KEY).streams.get('100').index, 1);
  });

  test('resume: the snapshot replaces what we had, live chunks continue after its index', () => {
    const state = signedInState();
    streamChunks(state, 100, ['w001 ', 'w002 ']); // then the connection dropped
    frame(state, 'joined', { conversation_id: CID, seq: 1, active_streams: [{ message_id: 100, content: 'w001 w002 w003 w004 ', index: 3 }] });
    assert.equal(textOf(state), 'w001 w002 w003 w004 ');
    // The server's live chunks overlap the snapshot: 3 is already in it, 4 is new.
    frame(state, 'stream_content', { message_id: 100, content: 'w004 ', index: 3 });
    frame(state, 'stream_content', { message_id: 100, content: 'w005 ', index: 4 });
    assert.equal(textOf(state), 'w001 w002 w003 w004 w005 ');
  });

  test('resume: a snapshot behind what we already hold is ignored', () => {
    const state = signedInState();
    streamChunks(state, 100, ['a', 'b', 'c', 'd']);
    frame(state, 'joined', { conversation_id: CID, seq: 1, active_streams: [{ message_id: 100, content: 'ab', index: 1 }] });
    assert.equal(textOf(state), 'abcd');
    assert.equal(state.convs.get(KEY).streams.get('100').index, 3);
  });

  test('resume: at the same index the longer text wins', () => {
    const state = signedInState();
    streamChunks(state, 100, ['ab']);
    frame(state, 'joined', { conversation_id: CID, active_streams: [{ message_id: 100, content: 'abc', index: 0 }] });
    assert.equal(textOf(state), 'abc');
    frame(state, 'joined', { conversation_id: CID, active_streams: [{ message_id: 100, content: 'a', index: 0 }] });
    assert.equal(textOf(state), 'abc');
  });

  test('resume of a reply we never saw start (joined after a reload)', () => {
    const state = signedInState();
    frame(state, 'joined', { conversation_id: CID, seq: 1, active_streams: [{ message_id: 100, content: 'Hel', index: 2 }] });
    frame(state, 'stream_content', { message_id: 100, content: 'lo', index: 3 });
    assert.equal(textOf(state), 'Hello');
  });

  test('a chunk after the stored copy finished the reply is dropped', () => {
    const state = signedInState();
    streamChunks(state, 100, ['Hel']);
    frame(state, 'message_added', { message: reply(100, 2, { content: 'Hello' }) });
    frame(state, 'stream_content', { message_id: 100, content: 'lo!!', index: 1 });
    assert.equal(textOf(state), 'Hello');
  });

  test('streamed history keeps the longer live text over an older checkpoint', () => {
    const state = signedInState();
    streamChunks(state, 100, ['Hello', ' world']);
    frame(state, 'message_received', { message: reply(100, 2, { status: 'streaming', content: 'Hello' }) });
    assert.equal(textOf(state), 'Hello world');
  });

  test('stream frames find their conversation by message id', () => {
    const state = signedInState();
    frame(state, 'stream_start', { conversation_id: 43, message_id: 200 });
    frame(state, 'stream_content', { message_id: 200, content: 'elsewhere', index: 0 });
    assert.equal(state.convs.get('43').messages.get('200').content, 'elsewhere');
    assert.equal(state.convs.get(KEY), undefined, 'the open conversation is untouched');
  });
});
