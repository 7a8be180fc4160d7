// Markdown → sanitized DOM, safe for untrusted model output.
//
// marked parses (raw HTML in the markdown is escaped and shows as text), highlight.js colours
// code, and DOMPurify sanitizes the result with an allowlist as a second line of defence. DOMPurify
// parses into an inert document (no browsing context: nothing is fetched) and returns a
// fragment still owned by that document; images are turned into plain links by the marked
// renderer and any <img> left from raw HTML is forbidden, so no element that loads a resource
// ever reaches the page. Streaming re-renders the whole text each frame (so a payload split
// across chunks is parsed as a whole) but only replaces the top-level blocks that changed.
import { Marked } from 'marked';
import DOMPurify from 'dompurify';
import hljs from 'highlight.js/lib/common';

const escapeHtml = (s) => String(s)
  .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  .replace(/"/g, '&quot;').replace(/'/g, '&#39;');

const LANG_ALIASES = { sh: 'bash', shell: 'bash', zsh: 'bash', console: 'bash', js: 'javascript', ts: 'typescript', py: 'python', yml: 'yaml', html: 'xml' };

const marked = new Marked({
  gfm: true,
  breaks: true, // GFM line breaks: a single newline is a <br> (a haiku keeps its three lines)
  async: false,
  renderer: {
    code({ text, lang }) {
      const name = (lang || '').trim().split(/\s+/)[0].toLowerCase();
      const language = LANG_ALIASES[name] || name;
      let body;
      if (language && hljs.getLanguage(language)) {
        body = hljs.highlight(text, { language, ignoreIllegals: true }).value;
      } else {
        body = escapeHtml(text);
      }
      const cls = language && /^[\w+#-]+$/.test(language) ? ` language-${language}` : '';
      const label = name ? escapeHtml(name) : 'text';
      return `<div class="code-block"><div class="code-head"><span class="code-lang">${label}</span></div>` +
        `<pre><code class="hljs${cls}">${body}</code></pre></div>\n`;
    },
    image({ href, title, text }) {
      // Never an <img>: a markdown image pointing elsewhere is a data-exfiltration channel.
      let host = '';
      try { host = new URL(href, 'https://invalid.invalid/').host; } catch { host = ''; }
      const where = host && host !== 'invalid.invalid' ? ` (${host})` : '';
      const label = `${text ? `Image: ${text}` : 'Image'}${where}`;
      const t = title ? ` title="${escapeHtml(title)}"` : '';
      return `<a class="img-link" href="${escapeHtml(href || '')}"${t}>${escapeHtml(label)}</a>`;
    },
    html({ text, block }) {
      // Raw HTML in a model's reply is shown as text, never parsed: even the inert document
      // DOMPurify parses into would report CSP violations for its inline handlers and styles.
      const escaped = escapeHtml(text);
      return block ? `<p>${escaped.trim().replace(/\n/g, '<br>')}</p>\n` : escaped;
    },
  },
});

const ALLOWED_TAGS = [
  'a', 'abbr', 'b', 'blockquote', 'br', 'caption', 'cite', 'code', 'dd', 'del', 'details', 'div', 'dl', 'dt',
  'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'i', 'ins', 'kbd', 'li', 'mark', 'ol', 'p', 'pre', 'q', 's',
  'samp', 'small', 'span', 'strong', 'sub', 'summary', 'sup', 'table', 'tbody', 'td', 'tfoot', 'th', 'thead',
  'tr', 'u', 'ul', 'var',
];
const ALLOWED_ATTR = ['href', 'title', 'class', 'align', 'start', 'colspan', 'rowspan', 'open', 'lang', 'dir'];
const CLASS_OK = /^(?:hljs(?:-[\w-]+)?|language-[\w+#-]+|code-block|code-head|code-lang|img-link|[\w-]+_)$/;
const SAFE_HREF = /^(?:https?:|mailto:|#)/i;
// DOMPurify applies this to every attribute value that is not "URI safe": allow our schemes and
// values without a scheme ("right", "2"); the hook below then keeps only SAFE_HREF links.
const URI_VALUE = /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i;

const purify = DOMPurify(window);
purify.addHook('uponSanitizeAttribute', (node, data) => {
  if (data.attrName === 'class') {
    const kept = data.attrValue.split(/\s+/).filter((c) => CLASS_OK.test(c));
    data.attrValue = kept.join(' ');
    if (!kept.length) data.keepAttr = false;
  }
});
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName === 'A') {
    const href = node.getAttribute('href');
    if (href === null || !SAFE_HREF.test(href.trim())) {
      node.removeAttribute('href'); // inert: no javascript:, data:, relative tricks
      return;
    }
    if (!href.startsWith('#')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer nofollow');
    }
  }
});

const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOWED_URI_REGEXP: URI_VALUE,
  FORBID_TAGS: ['img', 'image', 'svg', 'math', 'style', 'link', 'video', 'audio', 'source', 'picture', 'iframe', 'form', 'input'],
  FORBID_ATTR: ['style', 'background', 'srcset', 'src', 'poster', 'ping', 'action', 'formaction'],
  RETURN_DOM_FRAGMENT: true,
};

/** Sanitized fragment (owned by DOMPurify's inert document) for a markdown text. */
export function renderMarkdown(text) {
  let html;
  try {
    html = marked.parse(text || '');
  } catch {
    html = `<p>${escapeHtml(text || '')}</p>`;
  }
  const frag = purify.sanitize(html, PURIFY_CONFIG);
  // Defence in depth: nothing that could load a resource may survive.
  for (const bad of frag.querySelectorAll('img,image,video,audio,source,picture,iframe,object,embed,link,style,svg')) {
    bad.remove();
  }
  return frag;
}

/** Plain sanitized HTML string (used by tests and for copying). */
export function sanitizeHtml(html) {
  const frag = purify.sanitize(html, PURIFY_CONFIG);
  const div = frag.ownerDocument.createElement('div');
  div.appendChild(frag);
  return div.innerHTML;
}

const keyOf = (node) => (node.nodeType === 1 ? `E${node.outerHTML}` : `T${node.nodeType}${node.textContent}`);

/**
 * Make `container` show `text` as markdown, replacing only the top-level blocks that changed
 * (a finished code block keeps its copy button and any selection inside it).
 */
export function renderInto(container, text, { enhance } = {}) {
  const frag = renderMarkdown(text);
  const fresh = Array.from(frag.childNodes);
  const old = Array.from(container.childNodes);
  let i = 0;
  for (; i < fresh.length; i += 1) {
    const key = keyOf(fresh[i]);
    const cur = old[i];
    if (cur && cur.__mdKey === key) continue;
    const node = document.importNode(fresh[i], true);
    node.__mdKey = key;
    if (cur) container.replaceChild(node, cur);
    else container.appendChild(node);
    if (enhance && node.nodeType === 1) enhance(node);
  }
  for (; i < old.length; i += 1) old[i].remove();
}
