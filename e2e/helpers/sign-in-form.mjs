// Drives medgate's HTML sign-in pages with plain fetch, as a browser without JavaScript would.
// It posts each page's POST form back with every input, hidden ones included, and fills in the
// credentials or the chosen membership. It keeps cookies and follows redirects by hand until one
// points at the client's redirect URI.

const REQUEST_TIMEOUT_MS = 10_000;
const MAX_STEPS = 10;

/**
 * Signs in through the authorize URL's pages and returns `{callbackUrl, pages, steps}`:
 * the final redirect to `redirectUri` as a URL, the kinds of page seen in order
 * (`sign-in`, `membership-chooser`) and a log of each request with its status.
 * On the chooser page it picks `membershipId`, else the first membership offered.
 */
export async function signInThroughForm({ authorizeUrl, email, password, redirectUri, membershipId }) {
  const serverOrigin = new URL(authorizeUrl).origin;
  const expectedRedirect = new URL(redirectUri);
  const cookies = new Map();
  const pages = [];
  const steps = [];

  let url = new URL(authorizeUrl);
  let method = 'GET';
  let body;

  for (let step = 0; step < MAX_STEPS; step++) {
    if (url.origin !== serverOrigin) {
      throw new Error(`sign-in left the server for ${url.href}; steps so far:\n${steps.join('\n')}`);
    }

    const headers = {};
    if (cookies.size > 0) {
      headers.Cookie = [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    }
    if (body !== undefined) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
    }
    const response = await fetch(url, {
      method,
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    storeCookies(cookies, response);
    const text = await response.text();
    steps.push(`${method} ${url.pathname}${url.search} -> ${response.status}`);

    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      if (!location) {
        throw new Error(`${response.status} without a Location header; steps:\n${steps.join('\n')}`);
      }
      const next = new URL(location, url);
      if (next.origin === expectedRedirect.origin && next.pathname === expectedRedirect.pathname) {
        return { callbackUrl: next, pages, steps };
      }
      url = next;
      method = 'GET';
      body = undefined;
      continue;
    }

    if (response.status !== 200) {
      throw new Error(`${method} ${url.href} returned ${response.status}: ${text.slice(0, 2_000)}`);
    }

    const postForms = parseForms(text, url).filter((candidate) => candidate.method === 'post');
    const signInForm = postForms.find((candidate) => candidate.controls.some((control) => control.type === 'password'));
    const chooserForm = postForms.find((candidate) => candidate.controls.some((control) => control.name === 'membership'));
    const form = signInForm ?? chooserForm;
    if (!form) {
      throw new Error(`page at ${url.href} is neither the sign-in page nor the membership chooser: ${text.slice(0, 2_000)}`);
    }
    const fields = collectFields(form);

    if (form === signInForm) {
      pages.push('sign-in');
      setField(fields, 'email', email);
      setField(fields, 'password', password);
      addSubmitButton(fields, form);
    } else {
      pages.push('membership-chooser');
      const membershipChoices = form.controls.filter((control) => control.name === 'membership');
      const offered = membershipChoices.map((control) => control.value);
      const chosen = membershipId ?? offered[0];
      if (!offered.includes(chosen)) {
        throw new Error(`membership ${chosen} is not offered on the chooser page; offered: ${offered.join(', ')}`);
      }
      setField(fields, 'membership', chosen);
      if (membershipChoices.every((control) => control.tag === 'input')) {
        addSubmitButton(fields, form);
      }
    }

    url = form.action;
    method = 'POST';
    body = new URLSearchParams(fields).toString();
  }

  throw new Error(`no redirect to ${redirectUri} after ${MAX_STEPS} requests; steps:\n${steps.join('\n')}`);
}

/**
 * Parses the forms of an HTML page into `{method, action, controls}`, where `action` is resolved
 * against the page URL (an empty or missing action means the page URL itself, as in HTML) and each
 * control is `{tag, type, name, value, checked}` for an `input` or `button`.
 */
export function parseForms(html, pageUrl) {
  const forms = [];
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi)) {
    const attributes = parseAttributes(match[1]);
    const controls = [];
    for (const control of match[2].matchAll(/<(input|button)\b([^>]*)>/gi)) {
      const tag = control[1].toLowerCase();
      const controlAttributes = parseAttributes(control[2]);
      controls.push({
        tag,
        type: (controlAttributes.type ?? (tag === 'button' ? 'submit' : 'text')).toLowerCase(),
        name: controlAttributes.name,
        value: controlAttributes.value ?? '',
        checked: 'checked' in controlAttributes,
      });
    }
    forms.push({
      method: (attributes.method ?? 'get').toLowerCase(),
      action: new URL(attributes.action || pageUrl.href, pageUrl),
      controls,
    });
  }
  return forms;
}

/** Returns the fields a browser would submit without pressing a button, as [name, value] pairs. */
function collectFields(form) {
  const fields = [];
  for (const control of form.controls) {
    if (!control.name || control.tag === 'button') {
      continue;
    }
    if (['submit', 'button', 'image', 'reset', 'file'].includes(control.type)) {
      continue;
    }
    if ((control.type === 'checkbox' || control.type === 'radio') && !control.checked) {
      continue;
    }
    fields.push([control.name, control.value]);
  }
  return fields;
}

function setField(fields, name, value) {
  const remaining = fields.filter(([fieldName]) => fieldName !== name);
  fields.length = 0;
  fields.push(...remaining, [name, value]);
}

/** Adds the first named submit button's value, as a browser does when that button is pressed. */
function addSubmitButton(fields, form) {
  const button = form.controls.find(
    (control) => control.name && control.type === 'submit' && control.name !== 'membership',
  );
  if (button) {
    fields.push([button.name, button.value]);
  }
}

function parseAttributes(source) {
  const attributes = {};
  const pattern = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  for (const match of source.matchAll(pattern)) {
    const value = match[2] ?? match[3] ?? match[4] ?? '';
    attributes[match[1].toLowerCase()] = decodeHtmlEntities(value);
  }
  return attributes;
}

function decodeHtmlEntities(text) {
  const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (entity, code) => {
    if (code[0] === '#') {
      const number = code[1] === 'x' || code[1] === 'X' ? parseInt(code.slice(2), 16) : parseInt(code.slice(1), 10);
      return String.fromCodePoint(number);
    }
    return named[code.toLowerCase()] ?? entity;
  });
}

/** Stores `Set-Cookie` values by name. An empty value or `Max-Age=0` deletes the cookie. */
function storeCookies(cookies, response) {
  for (const header of response.headers.getSetCookie()) {
    const [pair, ...attributes] = header.split(';');
    const separator = pair.indexOf('=');
    if (separator <= 0) {
      continue;
    }
    const name = pair.slice(0, separator).trim();
    const value = pair.slice(separator + 1).trim();
    const expired = attributes.some((attribute) => /^\s*max-age\s*=\s*0\s*$/i.test(attribute));
    if (value === '' || expired) {
      cookies.delete(name);
    } else {
      cookies.set(name, value);
    }
  }
}
