// REST client. Paths are relative ("api/v1/…"), so the page works under a proxy path prefix.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export class Api {
  constructor({ getToken, onUnauthorized }) {
    this.getToken = getToken;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body = undefined, { auth = true } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const token = auth ? this.getToken() : null;
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch(new URL(path, document.baseURI), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(0, 'NETWORK', 'Cannot reach the server. Check your connection and try again.');
    }
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!res.ok) {
      const err = (data && data.error) || {};
      const retry = res.headers.get('Retry-After');
      const e = new ApiError(res.status, err.code || `HTTP_${res.status}`, err.message || `Request failed (${res.status})`,
        retry ? Number(retry) : null);
      if (res.status === 401 && auth && this.onUnauthorized) this.onUnauthorized(e);
      throw e;
    }
    return data;
  }

  get(path) { return this.request('GET', path); }
  post(path, body) { return this.request('POST', path, body ?? {}); }
  patch(path, body) { return this.request('PATCH', path, body ?? {}); }
  del(path) { return this.request('DELETE', path); }

  login(username, password) {
    return this.request('POST', 'api/v1/auth/login', { username, password }, { auth: false });
  }

  register(username, password) {
    return this.request('POST', 'api/v1/auth/register', { username, password }, { auth: false });
  }
}
