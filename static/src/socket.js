// The WebSocket client: authenticate with the first frame, reconnect with exponential backoff
// and jitter, correlate replies with `ref`, and detect dead connections with app-level pings.
//
// Events (EventTarget):
//   state   detail {state: 'connecting'|'online'|'waiting'|'stopped', retryInMs?, attempt}
//   online  detail {userId, sessionId} after auth_success (also after every reconnect)
//   frame   detail = the server frame (every frame but auth_success/pong)
//   authfailed detail {code, reason} when the server closes with 4001 (no retry)

const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15000;
const PING_EVERY_MS = 20000;
const DEAD_AFTER_MS = 45000;
const REQUEST_TIMEOUT_MS = 15000;

export class RequestError extends Error {
  constructor(message, { code = 'ERROR', disconnected = false, data = null } = {}) {
    super(message);
    this.code = code;
    this.disconnected = disconnected;
    this.data = data;
  }
}

/** The WebSocket URL of the page, relative to where the page is served (works under a proxy prefix). */
export function socketUrl(base = location.href) {
  const url = new URL('api/v1/chat/ws', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hash = '';
  url.search = '';
  return url.href;
}

export class ChatSocket extends EventTarget {
  constructor({ url = socketUrl(), getToken }) {
    super();
    this.url = url;
    this.getToken = getToken;
    this.ws = null;
    this.state = 'stopped';
    this.attempt = 0;
    this.retryTimer = null;
    this.heartbeat = null;
    this.lastFrameAt = 0;
    this.lastSentAt = 0;
    this.refSeq = 0;
    this.pending = new Map(); // ref -> {resolve, reject, timer, expect}
    this.userId = null;
    this._onOnline = () => { if (this.state === 'waiting') this.connectNow(); };
    this._onVisible = () => { if (document.visibilityState === 'visible' && this.state === 'waiting') this.connectNow(); };
  }

  get online() { return this.state === 'online'; }

  start() {
    if (this.state !== 'stopped') return;
    window.addEventListener('online', this._onOnline);
    document.addEventListener('visibilitychange', this._onVisible);
    this._connect();
  }

  stop() {
    this._setState('stopped');
    window.removeEventListener('online', this._onOnline);
    document.removeEventListener('visibilitychange', this._onVisible);
    clearTimeout(this.retryTimer);
    this._teardown('stopped');
  }

  /** Skip the remaining backoff and connect at once. */
  connectNow() {
    if (this.state !== 'waiting') return;
    clearTimeout(this.retryTimer);
    this._connect();
  }

  /** Send a frame if connected and authenticated; returns whether it was written. */
  send(type, data = {}, ref = undefined) {
    if (!this.ws || this.state !== 'online') return false;
    const frame = { type, data };
    if (ref !== undefined) frame.ref = ref;
    this.ws.send(JSON.stringify(frame));
    this.lastSentAt = Date.now();
    return true;
  }

  /**
   * Send a frame with a fresh `ref` and resolve with the server's direct answer (`ack`, `joined`,
   * `pong`), or reject with a RequestError (server `error`, timeout, or disconnect).
   */
  request(type, data = {}, { timeout = REQUEST_TIMEOUT_MS } = {}) {
    const ref = `r${++this.refSeq}`;
    return new Promise((resolve, reject) => {
      if (!this.send(type, data, ref)) {
        reject(new RequestError('Not connected', { code: 'OFFLINE', disconnected: true }));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new RequestError(`No answer to ${type}`, { code: 'TIMEOUT' }));
      }, timeout);
      this.pending.set(ref, { resolve, reject, timer });
    });
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, attempt: this.attempt, ...extra } }));
  }

  _connect() {
    this._teardown('reconnect');
    this._setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      const token = this.getToken();
      ws.send(JSON.stringify({ type: 'auth', token }));
      this.lastFrameAt = Date.now();
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      this._onFrame(frame);
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._failPending();
      this._stopHeartbeat();
      if (this.state === 'stopped') return;
      if (ev.code === 4001) {
        this._setState('stopped');
        this.dispatchEvent(new CustomEvent('authfailed', { detail: { code: ev.code, reason: ev.reason } }));
        return;
      }
      this._scheduleRetry(ev.code);
    });
  }

  _onFrame(frame) {
    if (frame.type === 'auth_success') {
      this.attempt = 0;
      this.userId = frame.user_id ?? frame.data?.user_id;
      this._setState('online');
      this._startHeartbeat();
      this.dispatchEvent(new CustomEvent('online', {
        detail: { userId: this.userId, sessionId: frame.data?.session_id },
      }));
      return;
    }
    const ref = frame.data && frame.data.ref;
    if (ref !== undefined && this.pending.has(ref)) {
      const p = this.pending.get(ref);
      this.pending.delete(ref);
      clearTimeout(p.timer);
      if (frame.type === 'error') {
        p.reject(new RequestError(frame.data.message || frame.data.code, { code: frame.data.code, data: frame.data }));
      } else {
        p.resolve(frame);
      }
    }
    if (frame.type === 'pong') return;
    this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
  }

  _scheduleRetry(code) {
    this.attempt += 1;
    // Exponential backoff with "equal jitter": half the delay fixed, half random, capped.
    // A server going away (1001) is usually restarting: the first retry comes quickly.
    const base = code === 1001 && this.attempt === 1 ? 250 : BACKOFF_BASE_MS * 2 ** (this.attempt - 1);
    const capped = Math.min(BACKOFF_CAP_MS, base);
    const delay = Math.round(capped / 2 + Math.random() * (capped / 2));
    this._setState('waiting', { retryInMs: delay, retryAt: Date.now() + delay, closeCode: code });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this.heartbeat = setInterval(() => {
      const now = Date.now();
      if (!this.ws) return;
      if (now - this.lastFrameAt > DEAD_AFTER_MS) {
        // No frame (not even a pong) for too long: the connection is dead even if TCP says not.
        const ws = this.ws;
        this.ws = null;
        this._failPending();
        this._stopHeartbeat();
        try { ws.close(4000, 'heartbeat timeout'); } catch { /* already closing */ }
        this._scheduleRetry();
        return;
      }
      if (now - this.lastSentAt >= PING_EVERY_MS || now - this.lastFrameAt >= PING_EVERY_MS) {
        this.send('ping', { t: now });
      }
    }, 5000);
  }

  _stopHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  _failPending() {
    for (const [ref, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError('Disconnected', { code: 'OFFLINE', disconnected: true }));
      this.pending.delete(ref);
    }
  }

  _teardown(reason) {
    this._stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    this._failPending();
    if (ws && ws.readyState <= WebSocket.OPEN) {
      try { ws.close(1000, reason); } catch { /* ignore */ }
    }
  }
}
