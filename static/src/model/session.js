// The signed-in session as kept in the tab's sessionStorage (and handed between tabs).

export const SESSION_KEY = 'chatd.session';
export const ACTIVE_KEY = 'chatd.active';
const EXPIRY_SLACK_MS = 5000;

/** A stored session (JSON text) if it is still usable at `now`, else null. */
export function parseSession(raw, now) {
  try {
    const s = JSON.parse(raw || 'null');
    if (s && s.token && (!s.expiresAt || s.expiresAt > now + EXPIRY_SLACK_MS)) return s;
  } catch { /* unreadable: sign in again */ }
  return null;
}

/** The session kept from a login or register answer received at `now`. */
export function sessionFromAuth(res, now) {
  return {
    token: res.access_token,
    user: res.user,
    expiresAt: res.expires_in ? now + res.expires_in * 1000 : null,
  };
}

/** Why a sign-in or registration failed, in words for the form. */
export function authErrorText(err) {
  if (err.status === 401) return 'Wrong username or password.';
  if (err.status === 409) return 'That username is taken. Choose another or sign in.';
  if (err.status === 429) return `Too many attempts. Try again in ${err.retryAfter || 'a few'} seconds.`;
  return err.message;
}

/** The message shown on the sign-in form after the socket refused the token. */
export const authFailedNotice = (reason) => (reason === 'Token expired'
  ? 'Your session has expired. Please sign in again.' : 'Please sign in again.');
