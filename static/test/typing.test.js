// Other members' typing indicators: expiry by time, order, and the line shown.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { convState } from '../src/model/state.js';
import { TYPING_EXPIRE_MS, nextTyperExpiry, noteTyper, typersAt, typersText } from '../src/model/typing.js';
import { signedInState } from '../testing/fixtures.js';

describe('typing indicators', () => {
  test('one, then several people, then nobody once they expire', () => {
    const c = convState(signedInState(), 42);
    noteTyper(c, '9', true, 0);
    assert.equal(typersText(c, 10), 'User 9 is typing…');
    noteTyper(c, '11', true, 1000);
    assert.equal(typersText(c, 1000), '2 people are typing…');
    assert.equal(nextTyperExpiry(c, 1000), TYPING_EXPIRE_MS);
    assert.deepEqual(typersAt(c, TYPING_EXPIRE_MS), ['11'], "9's indicator expired");
    assert.equal(typersText(c, 1000 + TYPING_EXPIRE_MS), '');
    assert.equal(nextTyperExpiry(c, 1000 + TYPING_EXPIRE_MS), null);
  });

  test('a refresh extends the indicator and keeps the order; "stopped" removes it', () => {
    const c = convState(signedInState(), 42);
    noteTyper(c, '9', true, 0);
    noteTyper(c, '11', true, 100);
    noteTyper(c, '9', true, 5000);
    assert.deepEqual(typersAt(c, 6500), ['9']);
    assert.equal(typersText(c, 5100), '2 people are typing…');
    noteTyper(c, '9', false, 5200);
    assert.equal(typersText(c, 5200), 'User 11 is typing…');
  });

  test('no conversation: nobody typing', () => {
    assert.equal(typersText(null, 0), '');
    assert.equal(nextTyperExpiry(null, 0), null);
  });
});
