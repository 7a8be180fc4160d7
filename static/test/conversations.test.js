// The sidebar model: newest first, unread marks, deletion, reconciliation, switching.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChangeSet } from '../src/model/changes.js';
import {
  conversationTitle, leaveActive, mergeConversationList, openConversation, openNewChat, removeConversation,
  sortedConversations, upsertConversation,
} from '../src/model/conversations.js';
import { convState } from '../src/model/state.js';
import { CID, KEY, frame, signedInState } from '../testing/fixtures.js';

const conv = (id, updated, fields = {}) => ({ id, title: `c${id}`, updated_at: updated, ...fields });
const ids = (state) => sortedConversations(state).map((c) => c.id);

describe('conversations', () => {
  test('sorted by last activity, newest first (created_at when never updated)', () => {
    const state = signedInState();
    state.conversations.clear();
    const ch = new ChangeSet();
    upsertConversation(state, conv(1, '2024-01-02T00:00:00Z'), ch);
    upsertConversation(state, conv(2, '2024-01-03T00:00:00Z'), ch);
    upsertConversation(state, { id: 3, created_at: '2024-01-01T00:00:00Z' }, ch);
    assert.deepEqual(ids(state), [2, 1, 3]);
    upsertConversation(state, conv(1, '2024-01-04T00:00:00Z'), ch);
    assert.deepEqual(ids(state), [1, 2, 3], 'new activity moves it to the top');
    assert.equal(ch.sidebar, true);
  });

  test('news in a conversation that is not open marks it unread; opening clears it', () => {
    const state = signedInState({ open: false });
    frame(state, 'conversation_updated', { conversation: conv(CID, '2024-02-01T00:00:00Z', { last_message: { content: 'hi' } }) });
    assert.ok(state.unread.has(KEY));
    openConversation(state, CID, new ChangeSet());
    assert.equal(state.unread.has(KEY), false);
  });

  test('no unread mark for the open one, a first sighting, or a change without a new message', () => {
    const state = signedInState();
    frame(state, 'conversation_updated', { conversation: conv(CID, '2024-02-01T00:00:00Z', { last_message: {} }) });
    frame(state, 'conversation_updated', { conversation: conv(43, '2024-02-01T00:00:00Z', { last_message: {} }) });
    frame(state, 'conversation_updated', { conversation: conv(43, '2024-02-02T00:00:00Z', { title: 'renamed' }) });
    assert.equal(state.unread.size, 0);
  });

  test('a deleted conversation that is not open just leaves the sidebar', () => {
    const state = signedInState();
    upsertConversation(state, conv(43, '2024-01-05T00:00:00Z'), new ChangeSet());
    convState(state, 43);
    const ch = frame(state, 'conversation_updated', { conversation: { id: 43, deleted: true } });
    assert.deepEqual(ids(state), [CID]);
    assert.equal(state.convs.has('43'), false);
    assert.equal(state.activeKey, KEY);
    assert.equal(ch.closed, null);
    assert.equal(ch.reset, false);
    assert.deepEqual(ch.notices, []);
    assert.equal(frame(state, 'conversation_updated', { conversation: { id: 43, deleted: true } }).sidebar, false, 'already gone');
  });

  test('deleting the open conversation here is quiet', () => {
    const state = signedInState();
    const ch = new ChangeSet();
    removeConversation(state, KEY, ch, { quiet: true });
    assert.equal(state.activeKey, null);
    assert.equal(ch.closed, KEY);
    assert.deepEqual(ch.notices, []);
  });

  test('a complete list from the server drops conversations deleted meanwhile', () => {
    const state = signedInState();
    upsertConversation(state, conv(43, '2024-01-05T00:00:00Z'), new ChangeSet());
    const ch = new ChangeSet();
    mergeConversationList(state, [conv(43, '2024-01-06T00:00:00Z'), conv(44, '2024-01-07T00:00:00Z')], 100, ch);
    assert.deepEqual(ids(state), [44, 43]);
    assert.equal(state.activeKey, null, 'the open one was deleted');
    assert.deepEqual(ch.notices, [], 'quietly');
  });

  test('a full (possibly truncated) list keeps conversations it does not mention', () => {
    const state = signedInState();
    mergeConversationList(state, [conv(43, '2024-01-06T00:00:00Z')], 1, new ChangeSet());
    assert.deepEqual(ids(state), [43, CID]);
  });

  test('switching: open, new chat, and leaving reports whether we were joined', () => {
    const state = signedInState({ open: false });
    const ch = new ChangeSet();
    const c = openConversation(state, CID, ch);
    assert.equal(state.activeKey, KEY);
    assert.equal(c, state.convs.get(KEY));
    assert.equal(ch.reset, true);
    assert.equal(leaveActive(state), null, 'not joined yet: nothing to leave');
    c.joined = true;
    assert.equal(leaveActive(state), c);
    assert.equal(c.joined, false);
    openNewChat(state, new ChangeSet());
    assert.equal(state.activeKey, null);
    assert.equal(leaveActive(state), null);
  });

  test('titles default to "New chat"', () => {
    assert.equal(conversationTitle({ title: '' }), 'New chat');
    assert.equal(conversationTitle(null), 'New chat');
    assert.equal(conversationTitle({ title: 'Plans' }), 'Plans');
  });
});
