// Sending: the optimistic copy, its reconciliation with the server's echo, resends and failures.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChangeSet } from '../src/model/changes.js';
import {
  beginSend, endSend, markAcked, markFailed, pendingOutside, queueSend, sendData, unackedIn,
} from '../src/model/pending.js';
import { convState } from '../src/model/state.js';
import { CID, KEY, ME, frame, orderOf, signedInState, stored } from '../testing/fixtures.js';

function queued(state, clientMsgId = 'c1', text = 'hello', assistantId = 'demo') {
  const c = convState(state, CID);
  const ch = new ChangeSet();
  queueSend(state, c, { clientMsgId, text, assistantId }, ch);
  return { c, ch };
}

describe('pending sends', () => {
  test('queueing shows an optimistic copy at the end and asks to scroll to it', () => {
    const state = signedInState();
    frame(state, 'message_received', { message: stored(1, 1) });
    const { c, ch } = queued(state);
    const m = c.messages.get('tmp-c1');
    assert.equal(m._optimistic, true);
    assert.equal(m.sender_id, ME);
    assert.equal(m.content, 'hello');
    assert.deepEqual(orderOf(state), [1, 'tmp-c1']);
    assert.ok(ch.lists.has(KEY) && ch.scroll.has(KEY));
    assert.deepEqual(sendData('c1', state.pending.get('c1')),
      { conversation_id: CID, content: 'hello', message_type: 'user', client_msg_id: 'c1', assistant_id: 'demo' });
  });

  test('the echo (message_received with our client_msg_id) replaces the copy in place', () => {
    const state = signedInState();
    const { c } = queued(state);
    const ch = frame(state, 'message_received', { message: stored(5, 5, { sender_id: ME, content: 'hello', client_msg_id: 'c1' }) });
    assert.equal(c.messages.has('tmp-c1'), false);
    assert.equal(c.messages.get('5')._optimistic, undefined);
    assert.deepEqual(ch.moved, [{ convKey: KEY, from: 'tmp-c1', to: '5' }], 'the view reuses the element');
    assert.equal(state.pending.size, 0);
    assert.deepEqual(orderOf(state), [5]);
  });

  test('an echo of a send from another tab replaces that tab-local copy too', () => {
    const state = signedInState();
    const { c } = queued(state, 'c1');
    state.pending.clear(); // as if the copy came from before a reload: no pending entry
    const ch = frame(state, 'message_received', { message: stored(5, 5, { sender_id: ME, client_msg_id: 'c1' }) });
    assert.deepEqual([...c.messages.keys()], ['5']);
    assert.deepEqual(ch.moved, [{ convKey: KEY, from: 'tmp-c1', to: '5' }]);
  });

  test('ack then echo: acked first, claimed by the echo', () => {
    const state = signedInState();
    queued(state);
    frame(state, 'ack', { ref: 'r1', client_msg_id: 'c1', message_id: 5 });
    assert.deepEqual(unackedIn(state, KEY), []);
    frame(state, 'message_received', { message: stored(5, 5, { sender_id: ME, client_msg_id: 'c1' }) });
    assert.equal(state.pending.size, 0);
  });

  test('echo then ack: the late ack is harmless', () => {
    const state = signedInState();
    queued(state);
    frame(state, 'message_received', { message: stored(5, 5, { sender_id: ME, client_msg_id: 'c1' }) });
    frame(state, 'ack', { ref: 'r1', client_msg_id: 'c1', message_id: 5 });
    assert.equal(state.pending.size, 0);
    assert.deepEqual([...state.convs.get(KEY).messages.keys()], ['5']);
  });

  test('a send in flight is not started twice; after a disconnect it may be resent', () => {
    const state = signedInState();
    queued(state);
    assert.ok(beginSend(state, 'c1'));
    assert.equal(beginSend(state, 'c1'), null);
    endSend(state, 'c1'); // disconnected before the ack
    assert.deepEqual(unackedIn(state, KEY), ['c1']);
    assert.ok(beginSend(state, 'c1'), 'resend after the reconnect (same client_msg_id)');
    assert.equal(beginSend(state, 'unknown'), null);
  });

  test('acked sends are not resent on rejoin but are after a reconnect elsewhere', () => {
    const state = signedInState();
    queued(state, 'c1');
    queued(state, 'c2');
    markAcked(state, 'c1');
    assert.deepEqual(unackedIn(state, KEY), ['c2']);
    assert.deepEqual(pendingOutside(state, '43'), ['c1', 'c2']);
    assert.deepEqual(pendingOutside(state, KEY), []);
    assert.deepEqual(pendingOutside(state, null), ['c1', 'c2']);
  });

  test('a refused send stays shown as failed and is no longer pending', () => {
    const state = signedInState();
    const { c } = queued(state);
    const ch = new ChangeSet();
    markFailed(state, 'c1', 'Too long', ch);
    assert.equal(c.messages.get('tmp-c1')._failed, 'Too long');
    assert.equal(state.pending.size, 0);
    assert.deepEqual(ch.messagesOf(KEY), ['tmp-c1']);
    const again = new ChangeSet();
    markFailed(state, 'c1', 'twice', again);
    assert.equal(again.messages.size, 0);
  });
});
