// The page's fixed elements, looked up once by id: E.composerInput is #composer-input.

const IDS = ['boot', 'auth-view', 'auth-form', 'auth-username', 'auth-password', 'auth-error', 'auth-submit',
  'auth-hint', 'auth-notice', 'tab-login', 'tab-register', 'auth-fields', 'chat-view', 'sidebar', 'scrim',
  'new-chat', 'conversation-list', 'conversation-empty', 'me-name', 'me-avatar', 'logout', 'menu-button',
  'conversation-title', 'assistant-picker', 'connection-status', 'messages', 'history-status', 'message-list',
  'empty-state', 'missing-state', 'missing-new-chat', 'suggestions', 'jump-bottom', 'typing-others', 'composer', 'composer-input', 'send-button',
  'stop-button', 'composer-hint', 'toasts'];

export const E = {};

/** Fill E from the document (call once, after the page is parsed). */
export function bindElements(doc = document) {
  for (const id of IDS) E[id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = doc.getElementById(id);
}
