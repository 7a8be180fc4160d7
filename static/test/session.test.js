// The stored session, the socket's state, and the assistants shown.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { assistantName, fallbackAssistant, setAssistants, wantedAssistant } from '../src/model/assistants.js';
import { ACTIVE_KEY, SESSION_KEY, authErrorText, authFailedNotice, parseSession, sessionFromAuth } from '../src/model/session.js';
import { convState, createState, isMe, isOnline, setConnection, signOut } from '../src/model/state.js';
import { KEY, ME, signedInState } from '../testing/fixtures.js';

describe('session', () => {
  test('storage keys stay the same', () => {
    assert.equal(SESSION_KEY, 'chatd.session');
    assert.equal(ACTIVE_KEY, 'chatd.active');
  });

  test('a stored session is used until 5 s before it expires', () => {
    const s = { token: 't', user: { id: 1 }, expiresAt: 100000 };
    assert.deepEqual(parseSession(JSON.stringify(s), 90000), s);
    assert.equal(parseSession(JSON.stringify(s), 96000), null);
    assert.deepEqual(parseSession(JSON.stringify({ ...s, expiresAt: null }), 1e12).token, 't');
    assert.equal(parseSession(null, 0), null);
    assert.equal(parseSession('{broken', 0), null);
    assert.equal(parseSession('{"user":{}}', 0), null);
  });

  test('a login answer becomes a session with an absolute expiry', () => {
    assert.deepEqual(sessionFromAuth({ access_token: 'a', user: { id: 2 }, expires_in: 60 }, 1000),
      { token: 'a', user: { id: 2 }, expiresAt: 61000 });
    assert.equal(sessionFromAuth({ access_token: 'a', user: {} }, 1000).expiresAt, null);
  });

  test('auth errors in words', () => {
    assert.equal(authErrorText({ status: 401 }), 'Wrong username or password.');
    assert.equal(authErrorText({ status: 409 }), 'That username is taken. Choose another or sign in.');
    assert.equal(authErrorText({ status: 429, retryAfter: 7 }), 'Too many attempts. Try again in 7 seconds.');
    assert.equal(authErrorText({ status: 0, message: 'offline' }), 'offline');
    assert.equal(authFailedNotice('Token expired'), 'Your session has expired. Please sign in again.');
    assert.equal(authFailedNotice('Invalid token'), 'Please sign in again.');
  });

  test('losing the connection ends every subscription', () => {
    const state = signedInState();
    const c = convState(state, 42);
    c.joined = true;
    c.joining = true;
    assert.equal(setConnection(state, 'online').composer, true);
    assert.equal(c.joined, true);
    setConnection(state, 'waiting');
    assert.equal(isOnline(state), false);
    assert.equal(c.joined || c.joining, false);
  });

  test('signing out forgets the account but keeps the model object (window.__chatd)', () => {
    const state = signedInState();
    convState(state, 42);
    state.pending.set('x', {});
    signOut(state);
    assert.equal(state.session, null);
    assert.equal(state.activeKey, null);
    assert.equal(state.conversations.size + state.convs.size + state.pending.size, 0);
    assert.ok(state.convs instanceof Map);
  });

  test('isMe compares ids as strings', () => {
    const state = signedInState();
    assert.equal(isMe(state, String(ME)), true);
    assert.equal(isMe(state, 9), false);
    assert.equal(isMe(state, null), false);
    assert.equal(isMe(createState(), undefined), false);
  });
});

describe('assistants', () => {
  test('the default is the one marked so, else the first', () => {
    const state = createState();
    setAssistants(state, [{ id: 'a' }, { id: 'b', default: true }]);
    assert.equal(state.defaultAssistant, 'b');
    setAssistants(state, [{ id: 'a' }]);
    assert.equal(state.defaultAssistant, 'a');
    setAssistants(state, []);
    assert.equal(state.defaultAssistant, null);
  });

  test('names, the picker choice, and the fallback for a reply', () => {
    const state = signedInState();
    assert.equal(assistantName(state, 'demo'), 'Demo');
    assert.equal(assistantName(state, 'gone'), 'gone');
    assert.equal(assistantName(state, null), 'Assistant');
    assert.equal(wantedAssistant(state), 'demo', "the open conversation's");
    state.activeKey = null;
    state.pickedAssistant = 'other';
    assert.equal(wantedAssistant(state), 'other');
    assert.equal(fallbackAssistant(state, KEY), 'demo');
    assert.equal(fallbackAssistant(state, 'unknown'), 'demo', 'the default');
  });
});
