// The recgraph page: plain DOM, no build step. Text goes in with textContent only.
"use strict";

const TOKEN_KEY = "recgraph-token";
const K = 10;

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  $("token-state").textContent = value ? "(set)" : "(not set: like, dislike and follow need it)";
}

// `recgraph serve` prints the page's address as http://host:port/#token=...
function tokenFromAddress() {
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (match) {
    setToken(decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    setToken(token());
  }
}

function say(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

function problem(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).slice(1).join(".") || "request"}: ${d.msg}`).join("; ");
  }
  return `HTTP ${status}`;
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    let message = problem(data, response.status);
    if (response.status === 401 || response.status === 403) {
      message += " (set the API token at the bottom of the page)";
    }
    throw new Error(message);
  }
  return data;
}

function meta(result) {
  const line = element("p", "meta");
  line.append(`score ${Number(result.score).toPrecision(3)} · from `);
  for (const name of result.retrievers) line.append(element("span", "tag", name));
  if (result.fallback) line.append(element("span", "tag fallback", "fallback"));
  return line;
}

function resultItem(result, title) {
  const item = element("li", "result");
  item.dataset.id = result.id;
  item.append(element("div", "name", title));
  if (title !== result.id) item.append(element("div", "id", result.id));
  item.append(element("p", "reason", result.reason));
  item.append(meta(result));
  return item;
}

function summary(data, noun) {
  const who = data.resolved !== data.query ? `${data.query} (${data.resolved})` : data.query;
  const how = !data.known
    ? "not in the model: popular picks for a new user"
    : data.cold_start
      ? "too little history: fallback picks"
      : "personalised";
  return `${data.results.length} ${noun} for ${who}: ${how}. Model ${data.model_version}.`;
}

// ------------------------------------------------------------------ who to follow
async function showSuggestions(account) {
  const status = $("account-status");
  const list = $("suggestions");
  say(status, `Finding accounts for ${account}…`);
  try {
    const data = await call("GET", `/v1/accounts/${encodeURIComponent(account)}/suggestions?k=${K}`);
    list.replaceChildren();
    for (const result of data.results) {
      const item = resultItem(result, result.label ? `@${result.label}` : result.id);
      const actions = element("div", "actions");
      const follow = element("button", "secondary", "Follow");
      follow.type = "button";
      follow.setAttribute("aria-label", `Follow ${result.label || result.id}`);
      follow.addEventListener("click", () => followAccount(data.resolved, result, follow));
      actions.append(follow);
      item.append(actions);
      list.append(item);
    }
    say(status, summary(data, "suggestions"));
  } catch (error) {
    list.replaceChildren();
    say(status, `Could not get suggestions: ${error.message}`, true);
  }
}

async function followAccount(user, result, button) {
  button.disabled = true;
  try {
    await call("POST", "/v1/feedback", { user, kind: "follow", account: result.id });
    await showSuggestions(user);
    say($("account-status"), `Followed ${result.label || result.id}; suggestions refreshed.`);
  } catch (error) {
    button.disabled = false;
    say($("account-status"), `Could not follow: ${error.message}`, true);
  }
}

// ------------------------------------------------------------------ feed
let feedUser = null;

async function showFeed(user, note) {
  const status = $("feed-status");
  const list = $("feed");
  feedUser = user;
  say(status, `Loading the feed of ${user}…`);
  try {
    const data = await call("GET", `/v1/users/${encodeURIComponent(user)}/feed?k=${K}`);
    list.replaceChildren();
    for (const result of data.results) {
      const title = result.label || result.id;
      const item = resultItem(result, title);
      const actions = element("div", "actions");
      for (const kind of ["like", "dislike"]) {
        const button = element("button", kind, kind === "like" ? "Like" : "Dislike");
        button.type = "button";
        button.setAttribute("aria-label", `${kind === "like" ? "Like" : "Dislike"} ${title}`);
        button.addEventListener("click", () => rate(data.resolved, result, kind, actions));
        actions.append(button);
      }
      item.append(actions);
      list.append(item);
    }
    say(status, note ? `${note} ${summary(data, "items")}` : summary(data, "items"));
    list.dataset.version = String(Number(list.dataset.version || 0) + 1);
  } catch (error) {
    list.replaceChildren();
    say(status, `Could not get the feed: ${error.message}`, true);
  }
}

async function rate(user, result, kind, actions) {
  for (const button of actions.querySelectorAll("button")) button.disabled = true;
  try {
    await call("POST", "/v1/feedback", { user, kind, item: result.id });
    const verb = kind === "like" ? "Liked" : "Disliked";
    await showFeed(feedUser || user, `${verb} “${result.label || result.id}”; feed refreshed.`);
  } catch (error) {
    for (const button of actions.querySelectorAll("button")) button.disabled = false;
    say($("feed-status"), `Could not send feedback: ${error.message}`, true);
  }
}

// ------------------------------------------------------------------ model and examples
function offerExamples(container, examples, onPick) {
  if (!examples || !examples.length) return;
  container.replaceChildren("Try: ");
  for (const example of examples) {
    const label = example.handle ? `@${example.handle}` : example.id;
    const button = element("button", "secondary", label);
    button.type = "button";
    button.addEventListener("click", () => onPick(example.handle || example.id));
    container.append(button);
  }
  container.hidden = false;
}

async function showModel() {
  const status = $("model-status");
  try {
    const info = await call("GET", "/v1/model");
    const questions = Object.entries(info.questions)
      .map(([name, q]) => `${name.replace(/_/g, " ")}: ${q.retrievers.join(" + ")} (fallback ${q.fallback.join(" → ")})`)
      .join(" · ");
    say(status, `Model ${info.version}${info.trained_at ? `, trained ${info.trained_at}` : ""}. ${questions}`);
    offerExamples($("account-examples"), info.examples.who_to_follow, (value) => {
      $("account-input").value = value;
      showSuggestions(value);
    });
    offerExamples($("feed-examples"), info.examples.feed, (value) => {
      $("feed-input").value = value;
      showFeed(value);
    });
  } catch (error) {
    say(status, `No model yet: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  tokenFromAddress();
  $("account-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("account-input").value.trim();
    if (value) showSuggestions(value);
  });
  $("feed-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("feed-input").value.trim();
    if (value) showFeed(value);
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken($("token-input").value.trim());
    $("token-input").value = "";
  });
  showModel();
});
