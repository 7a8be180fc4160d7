// Drafts per conversation in (a stand-in for) sessionStorage.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { DRAFTS_KEY, draftKey, draftOf, readDrafts, saveDraft } from '../src/model/drafts.js';
import { MemoryStorage } from '../testing/fixtures.js';

describe('drafts', () => {
  test('kept per conversation, with "new" for a chat not created yet', () => {
    const storage = new MemoryStorage();
    saveDraft(storage, draftKey('42'), 'half a thought');
    saveDraft(storage, draftKey(null), 'a new chat');
    assert.equal(draftOf(storage, '42'), 'half a thought');
    assert.equal(draftOf(storage, 'new'), 'a new chat');
    assert.equal(draftOf(storage, '43'), '');
    assert.deepEqual(JSON.parse(storage.getItem(DRAFTS_KEY)), { 42: 'half a thought', new: 'a new chat' });
  });

  test('an empty draft is forgotten', () => {
    const storage = new MemoryStorage();
    saveDraft(storage, '42', 'x');
    saveDraft(storage, '42', '');
    assert.deepEqual(readDrafts(storage), {});
  });

  test('the storage key is chatd.drafts, and unreadable content counts as no drafts', () => {
    assert.equal(DRAFTS_KEY, 'chatd.drafts');
    assert.deepEqual(readDrafts(new MemoryStorage({ 'chatd.drafts': '{not json' })), {});
    assert.deepEqual(readDrafts(new MemoryStorage({ 'chatd.drafts': 'null' })), {});
    const storage = new MemoryStorage({ 'chatd.drafts': 'null' });
    saveDraft(storage, '1', 'recovers');
    assert.equal(draftOf(storage, '1'), 'recovers');
  });
});
