// ChangeSet: the record views render from.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ChangeSet } from '../src/model/changes.js';

test('collects message keys per conversation, lists, notices and effects', () => {
  const ch = new ChangeSet().message('1', 'a').message('1', 'a').message('1', 'b').message('2', 'c').list('1');
  ch.notice('hi').effect('join', { convKey: '1' });
  assert.deepEqual(ch.messagesOf('1'), ['a', 'b']);
  assert.deepEqual(ch.messagesOf('3'), []);
  assert.deepEqual([...ch.lists], ['1']);
  assert.deepEqual(ch.notices, [{ text: 'hi', kind: 'info' }]);
  assert.deepEqual(ch.effects, [{ type: 'join', convKey: '1' }]);
});
