// The assistants a conversation can talk to, and which one the picker should show.

/** Store the server's assistant list; the default is the one marked so, else the first. */
export function setAssistants(state, list) {
  state.assistants = list;
  state.defaultAssistant = (list.find((a) => a.default) || list[0] || {}).id ?? null;
}

/** The display name of an assistant id. */
export function assistantName(state, id) {
  const a = state.assistants.find((x) => x.id === id);
  return a ? a.name || a.id : id || 'Assistant';
}

/** The assistant the picker should show: the open conversation's, else the one picked, else the default. */
export function wantedAssistant(state) {
  const conv = state.activeKey ? state.conversations.get(state.activeKey) : null;
  return conv?.assistant_id || state.pickedAssistant || state.defaultAssistant;
}

/** The assistant a new reply is attributed to when its frame does not say. */
export function fallbackAssistant(state, convKey) {
  return state.conversations.get(convKey)?.assistant_id || state.defaultAssistant;
}
