// A record of what one model update changed. The model fills it in; views read it to decide what
// to re-render, and the actions read `effects` to decide which requests to make. It never holds
// DOM nodes, so the model stays testable without a browser.

/** What changed in the model: parts of the page to re-render and follow-up requests to make. */
export class ChangeSet {
  constructor() {
    this.sidebar = false; // the conversation list (titles, order, unread dots, deletions)
    this.header = false; // the open conversation's title or assistant
    this.reset = false; // another conversation (or none) is open now: rebuild the chat pane
    this.closed = null; // key of the open conversation that went away (deleted)
    this.lists = new Set(); // conversation keys whose set or order of messages changed
    this.messages = new Map(); // conversation key -> Set of message keys whose content/status changed
    this.moved = []; // {convKey, from, to}: an optimistic copy became the stored message
    this.typing = new Set(); // conversation keys whose "someone is typing" list changed
    this.composer = false; // send/stop availability may have changed
    this.scroll = new Set(); // conversation keys where our own message arrived: scroll to it
    this.notices = []; // {text, kind}: short messages for the user (toasts)
    this.effects = []; // {type, ...}: requests the actions should make next
  }

  /** Note that one message's content or status changed. */
  message(convKey, msgKey) {
    let keys = this.messages.get(convKey);
    if (!keys) { keys = new Set(); this.messages.set(convKey, keys); }
    keys.add(msgKey);
    return this;
  }

  /** Note that a conversation gained, lost or reordered messages (or its typing row). */
  list(convKey) {
    this.lists.add(convKey);
    return this;
  }

  /** Queue a message for the user. */
  notice(text, kind = 'info') {
    this.notices.push({ text, kind });
    return this;
  }

  /** Queue a follow-up request for the actions (the model itself never does I/O). */
  effect(type, detail = {}) {
    this.effects.push({ type, ...detail });
    return this;
  }

  /** The message keys of one conversation that changed ([] when none). */
  messagesOf(convKey) {
    return [...(this.messages.get(convKey) || [])];
  }
}
