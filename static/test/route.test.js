// Conversation URLs (`#/c/ID`) and the "not found" state a bookmark of someone else's conversation gets.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ChangeSet } from '../src/model/changes.js';
import { openConversation, openMissing, openNewChat } from '../src/model/conversations.js';
import { isRoute, parseRoute, routeFor } from '../src/model/route.js';
import { signOut } from '../src/model/state.js';
import { KEY, signedInState } from '../testing/fixtures.js';

describe('routes', () => {
  test('a conversation has its own hash and reads back from it', () => {
    assert.equal(routeFor('42'), '#/c/42');
    assert.equal(routeFor(null), '#/');
    assert.equal(parseRoute('#/c/42'), '42');
    assert.equal(parseRoute('#/c/42/'), '42');
    const odd = 'a b/ü#?';
    assert.equal(parseRoute(routeFor(odd)), odd, 'any id survives the round trip');
  });

  test('a new chat, a skip link or junk name no conversation', () => {
    for (const h of ['', '#', '#/', '#composer-input', '#/c/', '#/c/%E0%A4%A', '#/x/1', '#/c/1/2', '#/c/%20']) {
      assert.equal(parseRoute(h), null, h);
    }
    assert.ok(isRoute('#/') && isRoute('') && isRoute('#/c/9'));
    assert.equal(isRoute('#composer-input'), false, 'a skip link is not a route: following it changes nothing');
  });
});

describe('a conversation the URL names but the server does not show', () => {
  test('is reported on the page, and opening anything else clears the report', () => {
    const state = signedInState();
    const ch = new ChangeSet();
    openMissing(state, 'nope', ch);
    assert.equal(state.activeKey, null);
    assert.equal(state.missingKey, 'nope');
    assert.equal(ch.reset, true);
    assert.equal(state.convs.has('nope'), false, 'no empty cache is left for it');
    openConversation(state, 42, new ChangeSet());
    assert.equal(state.missingKey, null);
    assert.equal(state.activeKey, KEY);
    openMissing(state, 'gone', new ChangeSet());
    openNewChat(state, new ChangeSet());
    assert.equal(state.missingKey, null);
  });

  test('signing out forgets it', () => {
    const state = signedInState();
    openMissing(state, 'nope', new ChangeSet());
    signOut(state);
    assert.equal(state.missingKey, null);
  });
});
