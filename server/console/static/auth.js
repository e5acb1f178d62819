// Tokens in the console: pasted, or minted by a development server.
//
// The dev-token contract: `GET /console/dev-token` answers 200 with
// {"token":"<jwt>"} only on a server that mints development tokens (`pgcast
// dev`); any other answer (404 on `pgcast serve`) hides the button.

const KEY = "pgcast.console.token";

/** claims decodes a JWT's payload without checking it (the server does), or null. */
export function claims(token) {
  try {
    const part = token.split(".")[1];
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    const c = JSON.parse(new TextDecoder().decode(bytes));
    return c && typeof c === "object" ? c : null;
  } catch {
    return null;
  }
}

/** expired: the token's exp is past (with 5 s to spare). */
export function expired(token) {
  const c = claims(token);
  return typeof c?.exp === "number" && c.exp * 1000 < Date.now() + 5000;
}

/** devToken asks the server for a development token; null when it mints none. */
export async function devToken() {
  try {
    const res = await fetch("/console/dev-token", { headers: { Accept: "application/json" }, cache: "no-store" });
    if (res.status !== 200) return null;
    const body = await res.json();
    return typeof body?.token === "string" && body.token !== "" ? body.token : null;
  } catch {
    return null;
  }
}

/** The token of this tab (sessionStorage: gone with the tab, never shared with others). */
export const saved = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => (t === null ? sessionStorage.removeItem(KEY) : sessionStorage.setItem(KEY, t)),
};
