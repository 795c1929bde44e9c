// tac-kb portal: fills the server-rendered page shells from the JSON API (/api/v1) with the session cookie.
// No framework, no build. Every text from the API goes into the DOM as text (textContent), never as HTML.
"use strict";

const T = JSON.parse(document.getElementById("i18n").textContent);
const DATA = JSON.parse(document.getElementById("page-data").textContent);
const API = "/api/v1";

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const $ = (sel, root) => (root || document).querySelector(sel);

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(API + path, init);
  if (r.status === 401 && DATA.role) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new ApiError(401, "login needed");
  }
  const payload = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    let detail = payload && payload.detail !== undefined ? payload.detail : r.statusText;
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    throw new ApiError(r.status, detail);
  }
  return payload;
}

function flash(message, kind) {
  const el = $("#flash");
  el.textContent = message;
  el.className = "flash " + (kind || "error");
  el.hidden = !message;
}

function fail(err) {
  flash(T.error + (err && err.message ? err.message : String(err)));
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(DATA.lang === "zh" ? "zh-CN" : "en-GB", { dateStyle: "short", timeStyle: "short" });
}

function stateLabel(state) {
  return T["state_" + state] || state;
}

function badge(text, cls) {
  return h("span", { class: "badge " + (cls || "") }, text);
}

function slaBadge(sla) {
  const s = (sla && sla.state) || "ok";
  return h("span", { class: "badge sla sla-" + s, "data-sla": s }, T["sla_" + s] || s);
}

function randomToken() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function articleHit(hit, onOpen) {
  return h(
    "li",
    { class: "hit", "data-article-id": hit.article_id },
    h("a", { href: "/articles/" + encodeURIComponent(hit.article_id), class: "hit-title", onclick: onOpen }, hit.title),
    h("div", { class: "muted small" }, hit.article_id, " · ", (hit.products || []).join(", ")),
    h("p", { class: "snippet" }, hit.snippet),
  );
}

// --- login --------------------------------------------------------------------------------------------------------

const HOME = {
  customer: "/", partner: "/", engineer: "/console", admin: "/console",
  author: "/author", reviewer: "/author", coach: "/author",
};

function pageLogin() {
  const form = $("#login-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    flash("");
    const body = { email: form.email.value.trim(), password: form.password.value };
    try {
      const out = await api("POST", "/auth/token", body);
      location.href = DATA.next || HOME[out.user.role] || "/";
    } catch (err) {
      fail(err);
    }
  });
}

// --- customer portal ----------------------------------------------------------------------------------------------

function pageSearch() {
  const input = $("#q");
  const list = $("#results");
  const status = $("#search-status");
  let seq = 0;
  const run = debounce(async () => {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) {
      list.replaceChildren();
      status.textContent = "";
      return;
    }
    try {
      const out = await api("GET", "/search?k=10&q=" + encodeURIComponent(q));
      if (mine !== seq) return; // a newer query is on its way: drop this answer
      list.replaceChildren(...out.articles.map((hit) => articleHit(hit)));
      status.textContent = out.articles.length ? "" : T.no_results;
      history.replaceState(null, "", "/?q=" + encodeURIComponent(q));
    } catch (err) {
      if (mine === seq) fail(err);
    }
  }, 150);
  input.addEventListener("input", run);
  const initial = new URLSearchParams(location.search).get("q");
  if (initial) {
    input.value = initial;
    run();
  }
}

const FIELDS = ["symptom", "environment", "cause", "resolution"];

async function pageArticle() {
  const id = DATA.article_id;
  let article;
  try {
    article = await api("GET", "/articles/" + encodeURIComponent(id));
  } catch (err) {
    $("#article-title").textContent = err.status === 404 ? T.not_found : T.error + err.message;
    return;
  }
  const langs = ["zh", "en"].filter((l) => article[l]);
  const show = (lang) => {
    const v = article[lang];
    $("#article").setAttribute("aria-busy", "false");
    $("#article").lang = lang === "zh" ? "zh-CN" : "en";
    $("#article-title").textContent = v.title;
    $("#mt-note").hidden = !v.machine_translated;
    $("#article-body").replaceChildren(
      ...FIELDS.filter((f) => v[f]).map((f) => h("section", { "data-field": f }, h("h2", {}, T[f]), h("div", { class: "text" }, v[f]))),
    );
    for (const b of document.querySelectorAll("#variant-switch button")) b.classList.toggle("on", b.dataset.lang === lang);
  };
  $("#article-meta").textContent = [id, (article.products || []).join(", ")].filter(Boolean).join(" · ");
  $("#variant-switch").replaceChildren(
    ...langs.map((l) => h("button", { type: "button", "data-lang": l, onclick: () => show(l) }, l === "zh" ? "中文" : "English")),
  );
  show(langs.includes(DATA.lang) ? DATA.lang : langs[0]);
  const box = $("#feedback");
  box.hidden = false;
  const send = async (helpful) => {
    try {
      await api("POST", "/articles/" + encodeURIComponent(id) + "/feedback", { helpful });
      $("#helpful-yes").disabled = $("#helpful-no").disabled = true;
      $("#feedback-done").hidden = false;
    } catch (err) {
      fail(err);
    }
  };
  $("#helpful-yes").addEventListener("click", () => send(true));
  $("#helpful-no").addEventListener("click", () => send(false));
}

function pageCaseNew() {
  const form = $("#case-form");
  const token = randomToken();
  const aside = $("#suggestions");
  const list = $("#suggestion-list");
  let touched = false;
  let submitted = false;
  let lastShown = "";
  let seq = 0;
  const event = (name, extra, beacon) => {
    const body = JSON.stringify({ token, event: name, ...(extra || {}) });
    if (beacon && navigator.sendBeacon) {
      navigator.sendBeacon(API + "/intake/events", new Blob([body], { type: "application/json" }));
      return Promise.resolve();
    }
    return fetch(API + "/intake/events", {
      method: "POST", credentials: "same-origin", keepalive: true,
      headers: { "Content-Type": "application/json" }, body,
    }).catch(() => {});
  };
  const refresh = debounce(async () => {
    const subject = form.subject.value.trim();
    const description = form.description.value.trim();
    if ((subject + description).length < 2) return;
    const mine = ++seq;
    try {
      const out = await api("POST", "/suggest", { subject, description: description.slice(0, 4000), k: 5 });
      if (mine !== seq) return;
      const hits = out.articles;
      list.replaceChildren(
        ...hits.map((hit) => {
          const li = articleHit(hit, () => event("article_opened", { article_id: hit.article_id }));
          li.querySelector("a").target = "_blank";
          return li;
        }),
      );
      aside.hidden = hits.length === 0;
      const ids = hits.map((x) => x.article_id).join(",");
      if (hits.length && ids !== lastShown) event("shown");
      lastShown = ids;
    } catch (err) {
      if (mine === seq) fail(err);
    }
  }, 300);
  for (const name of ["subject", "description"]) {
    form[name].addEventListener("input", () => {
      touched = true;
      refresh();
    });
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    flash("");
    const body = {
      subject: form.subject.value.trim(),
      description: form.description.value.trim(),
      product: form.product.value.trim(),
      version: form.version.value.trim(),
      priority: form.priority.value,
    };
    try {
      $("#submit-case").disabled = true;
      const created = await api("POST", "/cases", body);
      submitted = true;
      await event("case_opened", { case_id: created.id });
      location.href = "/cases/" + created.id;
    } catch (err) {
      $("#submit-case").disabled = false;
      fail(err);
    }
  });
  window.addEventListener("pagehide", () => {
    if (touched && !submitted) event("abandoned", null, true);
  });
}

async function pageCases() {
  try {
    const page = await api("GET", "/cases?limit=100");
    $("#case-table tbody").replaceChildren(
      ...page.items.map((c) =>
        h(
          "tr",
          { "data-case-id": c.id },
          h("td", {}, h("a", { href: "/cases/" + c.id }, c.external_id || "#" + c.id)),
          h("td", {}, h("a", { href: "/cases/" + c.id }, c.subject)),
          h("td", {}, badge(stateLabel(c.state), "state-" + c.state)),
          h("td", {}, c.priority),
          h("td", {}, when(c.updated_at)),
        ),
      ),
    );
    $("#empty").hidden = page.items.length > 0;
  } catch (err) {
    fail(err);
  }
}

function timelineItem(e) {
  const head = [when(e.at), " · ", e.author_name || "", " · ", e.kind];
  if (e.from_state || e.to_state) head.push(" · ", stateLabel(e.from_state || ""), " → ", stateLabel(e.to_state || ""));
  return h(
    "li",
    { class: e.internal ? "internal" : "", "data-kind": e.kind },
    h("div", { class: "muted small" }, ...head, e.internal ? badge(T.internal, "warn") : null),
    e.body ? h("div", { class: "text" }, e.body) : null,
  );
}

async function loadCase(caseId, staff) {
  const [c, events] = await Promise.all([api("GET", "/cases/" + caseId), api("GET", "/cases/" + caseId + "/timeline")]);
  $("#case-subject").textContent = c.subject;
  $("#case-state").textContent = stateLabel(c.state);
  $("#case-state").dataset.state = c.state;
  const meta = [c.external_id || "#" + c.id, c.org_name, c.product, c.version, c.priority, when(c.opened_at)];
  if (staff) meta.push(c.escalation_level);
  $("#case-meta").textContent = meta.filter(Boolean).join(" · ");
  $("#case-description").textContent = c.description;
  $("#timeline").replaceChildren(...events.map(timelineItem));
  return c;
}

function transitionButtons(box, c, reload) {
  box.replaceChildren(
    ...c.allowed_transitions.map((to) =>
      h("button", {
        type: "button", "data-to": to,
        onclick: async () => {
          try {
            await api("POST", "/cases/" + c.id + "/transitions", { to, expected_version: c.version_id });
            await reload();
          } catch (err) {
            fail(err);
          }
        },
      }, "→ " + stateLabel(to)),
    ),
  );
}

function noteForm(caseId, staff, reload) {
  const form = $("#note-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { kind: staff ? form.kind.value : "note", body: form.body.value.trim(), internal: staff && form.internal.checked };
    if (!body.body) return;
    try {
      await api("POST", "/cases/" + caseId + "/events", body);
      form.body.value = "";
      await reload();
    } catch (err) {
      fail(err);
    }
  });
}

function pageCase() {
  const id = DATA.case_id;
  const reload = async () => {
    try {
      const c = await loadCase(id, false);
      transitionButtons($("#case-actions"), c, reload);
    } catch (err) {
      $("#case-subject").textContent = err.status === 404 ? T.not_found : T.error + err.message;
    }
  };
  noteForm(id, false, reload);
  reload();
}

// --- engineer console ---------------------------------------------------------------------------------------------

function pageConsole() {
  const form = $("#queue-filter");
  const load = async () => {
    const params = new URLSearchParams({ limit: "100" });
    if (form.state.value) params.set("state", form.state.value);
    if (form.assigned_to_me.checked) params.set("assigned_to_me", "true");
    try {
      const page = await api("GET", "/cases?" + params);
      $("#queue tbody").replaceChildren(
        ...page.items.map((c) =>
          h(
            "tr",
            { "data-case-id": c.id, class: "sla-row-" + c.sla.state },
            h("td", {}, h("a", { href: "/console/cases/" + c.id }, c.external_id || "#" + c.id)),
            h("td", {}, slaBadge(c.sla)),
            h("td", {}, badge(c.priority, "prio-" + c.priority)),
            h("td", {}, h("a", { href: "/console/cases/" + c.id }, c.subject)),
            h("td", {}, c.org_name),
            h("td", {}, badge(stateLabel(c.state), "state-" + c.state)),
            h("td", {}, when(c.opened_at)),
          ),
        ),
      );
      $("#empty").hidden = page.items.length > 0;
    } catch (err) {
      fail(err);
    }
  };
  form.addEventListener("change", load);
  load();
}

function pageConsoleCase() {
  const id = DATA.case_id;
  let current = null;
  const loadLinks = async () => {
    const links = await api("GET", "/cases/" + id + "/links");
    $("#links").replaceChildren(
      ...links.map((l) =>
        h("li", { "data-article-id": l.article_id },
          h("a", { href: "/articles/" + encodeURIComponent(l.article_id) }, l.title || l.article_id),
          " ", badge(l.relation), h("span", { class: "muted small" }, " v", l.article_version)),
      ),
    );
    return new Set(links.map((l) => l.article_id));
  };
  const loadSuggestions = async (linked) => {
    const out = await api("GET", "/cases/" + id + "/suggestions");
    $("#suggested-articles").replaceChildren(
      ...out.articles.map((hit) => {
        const li = articleHit(hit);
        const done = linked.has(hit.article_id);
        li.append(
          h("button", {
            type: "button", class: "link-article", disabled: done,
            onclick: async (ev) => {
              try {
                ev.target.disabled = true;
                await api("POST", "/cases/" + id + "/links", { article_id: hit.article_id, relation: "solved_by" });
                ev.target.textContent = T.linked;
                await loadLinks();
              } catch (err) {
                ev.target.disabled = false;
                fail(err);
              }
            },
          }, done ? T.linked : T.link),
        );
        return li;
      }),
    );
    $("#similar-cases").replaceChildren(
      ...out.cases.map((c) =>
        h("li", { class: "hit", "data-case-id": c.case_id },
          h("a", { href: "/console/cases/" + c.case_id }, c.subject),
          h("div", { class: "muted small" }, "#", c.case_id, " · ", c.product, " · ", stateLabel(c.state)),
          h("p", { class: "snippet" }, c.resolution || c.snippet)),
      ),
    );
  };
  const reload = async () => {
    try {
      current = await loadCase(id, true);
      $("#resolution-form").resolution.value = current.resolution || "";
      $("#case-sla").replaceWith(Object.assign(slaBadge(current.sla), { id: "case-sla" }));
      transitionButtons($("#transitions"), current, reload);
      showAssignee(current);
    } catch (err) {
      $("#case-subject").textContent = err.status === 404 ? T.not_found : T.error + err.message;
      throw err;
    }
  };
  const assignMe = $("#assign-me");
  const me = Number(assignMe.dataset.userId);
  const showAssignee = (c) => {
    const mine = c.assignee_id === me;
    $("#case-assignee").textContent = mine ? T.assigned_to_you : c.assignee_id ? "#" + c.assignee_id : T.unassigned;
    assignMe.hidden = mine || !me;
  };
  assignMe.addEventListener("click", async () => {
    if (assignMe.disabled) return;
    assignMe.disabled = true;
    try {
      await api("POST", "/cases/" + id + "/assign", { assignee_id: me, expected_version: current.version_id });
      await reload();
    } catch (err) {
      fail(err);
    } finally {
      assignMe.disabled = false;
    }
  });
  noteForm(id, true, reload);
  $("#resolution-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("PATCH", "/cases/" + id, { expected_version: current.version_id, resolution: ev.target.resolution.value.trim() });
      await reload();
      $("#resolution-saved").hidden = false;
    } catch (err) {
      fail(err);
    }
  });
  $("#escalate-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    try {
      await api("POST", "/cases/" + id + "/escalate", {
        level: form.level.value, note: form.note.value.trim(), expected_version: current.version_id,
      });
      form.note.value = "";
      await reload();
    } catch (err) {
      fail(err);
    }
  });
  const createArticle = $("#create-article");
  createArticle.addEventListener("click", async () => {
    // Disabled while the request runs (and after it, while the editor loads): one press, one draft. The API
    // answers a repeated request with the case's existing draft as well.
    if (createArticle.disabled) return;
    createArticle.disabled = true;
    try {
      const draft = await api("POST", "/cases/" + id + "/article-draft");
      location.href = "/author/articles/" + encodeURIComponent(draft.article_id);
    } catch (err) {
      createArticle.disabled = false;
      fail(err);
    }
  });
  const loadAssist = async () => {
    const out = await api("GET", "/cases/" + id + "/assist");
    const byNumber = new Map(out.citations.map((c) => [c.n, c]));
    const item = (s) => h("li", { class: "sentence" }, s.text, " ", ...citeLinks(s.cites, byNumber));
    $("#assist-summary").replaceChildren(...out.summary.map(item));
    $("#assist-similar").replaceChildren(...out.similar.map((c) => item(c.sentence)));
    $("#assist-steps").replaceChildren(...out.next_steps.map(item));
    $("#assist-reply").replaceChildren(...out.reply.map(item));
    $("#assist-notes").replaceChildren(...out.notes.map((n) => h("li", {}, n)));
    $("#assist-citations").replaceChildren(
      ...out.citations.map((c) =>
        h("li", { class: "hit", "data-ref": c.ref }, `[${c.n}] `, h("a", { href: c.url }, c.title || c.ref),
          h("span", { class: "muted small" }, c.kind === "article" ? ` ${c.ref} · v${c.version}` : ` ${c.ref}`))),
    );
    $("#assist-body").hidden = false;
    $("#assist-use-reply").onclick = () => {
      const form = $("#note-form");
      form.body.value = out.reply.map((s) => s.text).join("\n");
      form.kind.value = "email";
      form.internal.checked = false;
      form.body.focus();
    };
  };
  $("#assist-load").addEventListener("click", async (ev) => {
    ev.target.disabled = true;
    try {
      await loadAssist();
    } catch (err) {
      fail(err);
    } finally {
      ev.target.disabled = false;
    }
  });
  reload()
    .then(loadLinks)
    .then(loadSuggestions)
    .catch((err) => { if (err.status !== 404) fail(err); });
}

// --- authoring ----------------------------------------------------------------------------------------------------

function articleTitle(a) {
  return DATA.lang === "en" ? a.title_en || a.title_zh : a.title_zh || a.title_en;
}

function newArticleForm() {
  const form = $("#new-article-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    flash("");
    const title = form.title.value.trim();
    if (!title || form.dataset.busy) return;
    form.dataset.busy = "1";
    $("#new-article").disabled = true;
    try {
      const created = await api("POST", "/articles", { [form.lang.value]: { title } });
      location.href = "/author/articles/" + encodeURIComponent(created.article_id);
    } catch (err) {
      delete form.dataset.busy;
      $("#new-article").disabled = false;
      fail(err);
    }
  });
}

async function pageAuthor() {
  newArticleForm();
  for (const table of document.querySelectorAll(".article-list")) {
    try {
      const page = await api("GET", "/articles?limit=100&confidence=" + table.dataset.confidence);
      $("tbody", table).replaceChildren(
        ...page.items.map((a) =>
          h("tr", { "data-article-id": a.article_id },
            h("td", {}, h("a", { href: "/author/articles/" + encodeURIComponent(a.article_id) }, a.article_id)),
            h("td", {}, articleTitle(a) || ""),
            h("td", {}, a.audience),
            h("td", {}, when(a.updated_at)),
            h("td", {}, a.stale && (a.stale.zh || a.stale.en) ? badge(T.stale, "warn") : null)),
        ),
      );
      if (!page.items.length) $("tbody", table).append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, T.no_articles)));
    } catch (err) {
      fail(err);
    }
  }
}

function actionLabel(cur, to) {
  if (to.confidence === "validated" && to.audience === "public" && (cur.confidence !== "validated" || cur.audience !== "public")) return ["publish", T.act_publish];
  if (to.confidence === "archived") return ["archive", T.act_archive];
  if (cur.confidence === "wip" && to.confidence === "not_validated" && to.audience === cur.audience) return ["submit", T.act_submit];
  if (cur.confidence === "archived" && to.confidence !== "archived") return ["restore", T.act_restore];
  if (to.confidence === "wip" && cur.confidence !== "wip") return ["back_to_wip", T.act_back_to_wip];
  return [null, null];
}

const splitList = (s) => s.split(/[,，;；]/).map((x) => x.trim()).filter(Boolean);

function pageEditor() {
  const id = DATA.article_id;
  const form = $("#editor-form");
  let article = null;
  const fill = (a) => {
    article = a;
    $("#editor-title").textContent = id + " v" + a.version;
    $("#state-confidence").textContent = T.confidence + ": " + a.confidence;
    $("#state-audience").textContent = T.audience + ": " + a.audience;
    for (const l of ["zh", "en"]) {
      const v = a[l] || {};
      for (const f of ["title"].concat(FIELDS)) form.elements[l + "." + f].value = v[f] || "";
      $("#stale-" + l).hidden = !(a.stale && a.stale[l]);
      const mark = $("#mark-current-" + l);
      if (mark) mark.hidden = !(a.stale && a.stale[l] && a[l]);
    }
    form.keywords.value = (a.keywords || []).join(", ");
    form.products.value = (a.products || []).join(", ");
    form.error_codes.value = (a.error_codes || []).join(", ");
    const cur = { confidence: a.confidence, audience: a.audience, governance: a.governance };
    const buttons = [];
    for (const to of a.allowed_transitions || []) {
      const [action, label] = actionLabel(cur, to);
      if (!action || buttons.some((b) => b.dataset.action === action)) continue;
      buttons.push(
        h("button", {
          type: "button", "data-action": action,
          onclick: async () => {
            try {
              await api("POST", "/articles/" + encodeURIComponent(id) + "/transitions", { expected_version: article.version_id, ...to });
              await load();
            } catch (err) {
              fail(err);
            }
          },
        }, label),
      );
    }
    $("#state-actions").replaceChildren(...buttons);
  };
  const loadVersions = async () => {
    const versions = await api("GET", "/articles/" + encodeURIComponent(id) + "/versions");
    $("#versions").replaceChildren(
      ...versions.map((v, i) =>
        h("li", { "data-version": v.version },
          "v" + v.version, " · ", when(v.created_at), " · ", v.title_zh || v.title_en || "",
          i + 1 < versions.length || versions.length > 1
            ? h("button", {
                type: "button", class: "diff-button",
                onclick: () => showDiff(v.version),
              }, T.diff)
            : null),
      ),
    );
  };
  const showDiff = async (version) => {
    const from = version > 1 ? version - 1 : version;
    const to = version > 1 ? version : Math.min(2, article.version);
    try {
      const out = await api("GET", "/articles/" + encodeURIComponent(id) + "/diff?from=" + from + "&to=" + to);
      const pre = $("#diff");
      pre.hidden = false;
      pre.replaceChildren(
        "v" + out.from + " → v" + out.to + "\n",
        ...out.fields.flatMap((f) => [h("strong", {}, f.field), "\n", ...f.diff.split("\n").map((line) =>
          h("span", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "" }, line + "\n"))]),
      );
    } catch (err) {
      fail(err);
    }
  };
  const load = async () => {
    try {
      fill(await api("GET", "/articles/" + encodeURIComponent(id)));
      await loadVersions();
    } catch (err) {
      if (err.status === 404) $("#editor-title").textContent = T.not_found;
      else fail(err);
    }
  };
  for (const mark of document.querySelectorAll(".mark-current")) {
    mark.addEventListener("click", async () => {
      const l = mark.dataset.lang;
      if (mark.disabled || !article || !article[l]) return;
      // The variant as shown (edits included) becomes the translation of the other language's current version.
      const variant = { machine_translated: Boolean(article[l].machine_translated) };
      for (const f of ["title"].concat(FIELDS)) variant[f] = form.elements[l + "." + f].value.trim();
      mark.disabled = true;
      flash("");
      try {
        fill(await api("PUT", "/articles/" + encodeURIComponent(id) + "/translations/" + l, {
          expected_version: article.version_id, variant,
        }));
        await loadVersions();
        flash(T.marked_current, "ok");
      } catch (err) {
        fail(err);
      } finally {
        mark.disabled = false;
      }
    });
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    flash("");
    const body = {
      expected_version: article.version_id,
      keywords: splitList(form.keywords.value),
      products: splitList(form.products.value),
      error_codes: splitList(form.error_codes.value),
    };
    for (const l of ["zh", "en"]) {
      const v = {};
      for (const f of ["title"].concat(FIELDS)) v[f] = form.elements[l + "." + f].value.trim();
      const old = article[l];
      const changed = old ? Object.keys(v).some((f) => (old[f] || "") !== v[f]) : Boolean(v.title);
      if (changed && v.title) body[l] = v;
    }
    try {
      fill(await api("PATCH", "/articles/" + encodeURIComponent(id), body));
      await loadVersions();
      $("#saved").hidden = false;
      setTimeout(() => { $("#saved").hidden = true; }, 2000);
    } catch (err) {
      fail(err);
    }
  });
  load();
}

// --- assistant ----------------------------------------------------------------------------------------------------

function sseEvents(buffer) {
  // Complete Server-Sent Events at the head of ``buffer``: [[events], rest].
  const out = [];
  let cut;
  while ((cut = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, cut);
    buffer = buffer.slice(cut + 2);
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    if (data.length) out.push([name, JSON.parse(data.join("\n"))]);
  }
  return [out, buffer];
}

function citeLinks(cites, byNumber) {
  return cites.map((n) => {
    const c = byNumber && byNumber.get(n);
    return c
      ? h("a", { class: "cite", href: c.url, title: `${c.title} (${c.ref} v${c.version})`, "data-cite": n }, `[${n}]`)
      : h("span", { class: "cite", "data-cite": n }, `[${n}]`);
  });
}

function pageAssistant() {
  const form = $("#ask-form");
  const box = $("#answer");
  const list = $("#answer-sentences");
  const status = $("#answer-status");
  const notes = $("#answer-notes");
  const sentence = (s, byNumber) => h("li", { class: "sentence" }, s.text, " ", ...citeLinks(s.cites, byNumber));

  function render(answer) {
    const byNumber = new Map(answer.citations.map((c) => [c.n, c]));
    list.replaceChildren(...answer.sentences.map((s) => sentence(s, byNumber)));
    notes.replaceChildren(...answer.notes.map((n) => h("li", {}, n)));
    $("#citation-list").replaceChildren(
      ...answer.citations.map((c) =>
        h(
          "li",
          { class: "hit", "data-ref": c.ref },
          `[${c.n}] `,
          h("a", { href: c.url, class: "hit-title" }, c.title),
          h("span", { class: "muted small" }, ` ${c.ref} · v${c.version}`),
        ),
      ),
    );
    $("#answer-citations").hidden = answer.citations.length === 0;
    const abstained = answer.status === "abstained";
    $("#abstention").hidden = !abstained;
    if (abstained) {
      $("#closest-list").replaceChildren(
        ...answer.closest.map((a) => h("li", { class: "hit" }, h("a", { href: a.url, class: "hit-title" }, a.title))),
      );
      const action = answer.actions.find((a) => a.type === "open_case");
      if (action) $("#open-case").href = action.url;
    }
    status.textContent = abstained ? T.assistant_abstained : answer.generator === "llm" ? T.assistant_generated : T.assistant_quoted;
    box.dataset.status = answer.status;
  }

  async function ask(question) {
    box.hidden = false;
    delete box.dataset.status;
    list.replaceChildren();
    notes.replaceChildren();
    $("#answer-citations").hidden = true;
    $("#abstention").hidden = true;
    status.textContent = T.loading;
    $("#ask-button").disabled = true;
    try {
      const r = await fetch(API + "/assistant/stream", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ question }),
      });
      if (!r.ok) {
        const payload = await r.json().catch(() => null);
        throw new ApiError(r.status, (payload && payload.detail) || r.statusText);
      }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let events;
        [events, buffer] = sseEvents(buffer + decoder.decode(value, { stream: true }));
        for (const [name, data] of events) {
          if (name === "sentence") list.append(sentence(data));
          else if (name === "fallback") list.replaceChildren();
          else if (name === "answer") render(data);
        }
      }
    } catch (err) {
      status.textContent = "";
      fail(err);
    } finally {
      $("#ask-button").disabled = false;
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const question = form.question.value.trim();
    if (question.length >= 2) ask(question);
  });
  if (form.question.value.trim()) ask(form.question.value.trim());
}

const PAGES = {
  assistant: pageAssistant,
  login: pageLogin,
  search: pageSearch,
  article: pageArticle,
  case_new: pageCaseNew,
  cases: pageCases,
  case: pageCase,
  console: pageConsole,
  console_case: pageConsoleCase,
  author: pageAuthor,
  editor: pageEditor,
};

const nav = document.querySelector(`[data-nav="${document.body.dataset.page}"]`);
if (nav) nav.classList.add("on");
const start = PAGES[document.body.dataset.page];
if (start) start();
