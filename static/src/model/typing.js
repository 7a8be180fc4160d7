// Other members' typing indicators. An indicator lasts a few seconds unless refreshed, so one
// whose "stopped typing" frame was lost still goes away; expiry is a timestamp, not a timer,
// which keeps this code free of clocks it does not get passed.

export const TYPING_EXPIRE_MS = 6000;

/** Record someone's typing_indicator at time `now`. */
export function noteTyper(c, userKey, isTyping, now) {
  for (const [k, until] of c.typers) if (until <= now) c.typers.delete(k);
  if (isTyping) c.typers.set(userKey, now + TYPING_EXPIRE_MS);
  else c.typers.delete(userKey);
}

/** The user keys typing at time `now`, in the order they started. */
export function typersAt(c, now) {
  if (!c) return [];
  return [...c.typers].filter(([, until]) => until > now).map(([k]) => k);
}

/** When the next indicator of this conversation expires (null if none is shown). */
export function nextTyperExpiry(c, now) {
  const live = c ? [...c.typers.values()].filter((until) => until > now) : [];
  return live.length ? Math.min(...live) : null;
}

/** The line shown under the messages: '', one name, or how many are typing. */
export function typersText(c, now) {
  const who = typersAt(c, now);
  if (who.length === 0) return '';
  return who.length === 1 ? `User ${who[0]} is typing…` : `${who.length} people are typing…`;
}
