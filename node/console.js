// The exchnode web console: reads /v1/console/overview and /v1/console/catalog and shows them.
//
// Read-only.  The token is kept in sessionStorage (this tab only) and sent as
// "Authorization: Bearer ..." on fetch(); never in a URL.  Every value from the
// node is written with textContent: nothing it sends is ever parsed as markup.
// Times are shown in ISO 8601 with the offset the node names (China Standard Time).
"use strict";

(() => {
  const TOKEN_KEY = "exchnode.console.token";
  const REFRESH_MS = 5000;
  const SEARCH_DELAY_MS = 300;
  let offsetMinutes = 480;
  let timer = null;
  let searchTimer = null;
  let running = false;
  let generation = 0; // a new one at every sign-in and sign-out: late answers of the old are dropped
  let busy = false; // one refresh at a time, however slow the node answers
  let loaded = false; // whether this sign-in has shown the node once

  const $ = (id) => document.getElementById(id);

  // --- formatting -------------------------------------------------------------------------

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function iso(value) {
    if (value === null || value === undefined || value === "") return "—";
    const ms = typeof value === "number" ? value : Date.parse(value);
    if (!Number.isFinite(ms)) return String(value);
    const shifted = new Date(ms + offsetMinutes * 60000).toISOString().slice(0, 19);
    const sign = offsetMinutes < 0 ? "-" : "+";
    const abs = Math.abs(offsetMinutes);
    return `${shifted}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
  }

  function text(value) {
    return value === null || value === undefined || value === "" ? "—" : String(value);
  }

  // A cell: plain text, or {text, cls} for a state shown with its class (and always in words).
  function cell(value) {
    const td = document.createElement("td");
    if (value !== null && typeof value === "object") {
      td.textContent = text(value.text);
      if (value.cls) td.className = value.cls;
      if (value.title) td.title = value.title;
    } else {
      td.textContent = text(value);
    }
    return td;
  }

  function state(word, cls) {
    return { text: word, cls: `state ${cls || `state-${word}`}` };
  }

  function num(value) {
    return { text: text(value), cls: "num" };
  }

  function when(value) {
    return { text: iso(value), cls: "time" };
  }

  function ident(value) {
    return { text: text(value), cls: "name" };
  }

  function fillTable(id, rows, columns, empty) {
    const body = $(id).tBodies[0];
    const fresh = [];
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = $(id).tHead.rows[0].cells.length;
      td.className = "empty";
      td.textContent = empty;
      tr.appendChild(td);
      fresh.push(tr);
    }
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const column of columns) tr.appendChild(cell(column(row)));
      fresh.push(tr);
    }
    body.replaceChildren(...fresh);
  }

  function fillFacts(id, pairs) {
    const items = [];
    for (const [term, value] of pairs) {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = text(value);
      items.push(dt, dd);
    }
    $(id).replaceChildren(...items);
  }

  function fillList(id, lines, empty) {
    const items = lines.map((line) => {
      const li = document.createElement("li");
      li.textContent = line.text;
      if (line.cls) li.className = line.cls;
      return li;
    });
    if (items.length === 0 && empty) {
      const li = document.createElement("li");
      li.textContent = empty;
      li.className = "empty";
      items.push(li);
    }
    $(id).replaceChildren(...items);
  }

  // --- talking to the node ----------------------------------------------------------------

  class Refused extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function read(path) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new Refused(401, "not signed in", "unauthorized");
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error : response.statusText;
      throw new Refused(response.status, message, body && body.code);
    }
    return body;
  }

  function showProblem(message) {
    const box = $("problem");
    box.textContent = message;
    box.hidden = !message;
  }

  // --- panels -----------------------------------------------------------------------------

  function renderNode(data) {
    const node = data.node;
    offsetMinutes = typeof node.utc_offset_minutes === "number" ? node.utc_offset_minutes : 480;
    $("node-name").textContent = `${node.name} (${node.level})`;
    $("role").textContent = text(node.role);
    $("refreshed").textContent = iso(node.now_ms);
    document.title = `exchnode console — ${node.name}`;
    fillFacts("node-facts", [
      ["Name", node.name],
      ["Level", node.level],
      ["Link address", node.link_url],
      ["Up for", duration(node.uptime_s)],
      ["Node time", iso(node.now_ms)],
    ]);
  }

  function refusalText(refused) {
    if (!refused) return "—";
    const by = refused.refused_by ? `by ${refused.refused_by}` : "";
    return `${refused.reason} (${refused.kind}) ${by} ×${refused.count}`.trim();
  }

  function renderNeighbours(data) {
    fillTable(
      "neighbours",
      data.neighbours,
      [
        (p) => ident(p.name),
        (p) => p.relation,
        (p) => state(p.state),
        (p) => num(p.failures),
        (p) => (p.retry_in_ms ? duration(p.retry_in_ms / 1000) : "—"),
        (p) => when(p.last_ok_ms),
        (p) => num(p.queued.count ? `${p.queued.count} (${bytes(p.queued.bytes)})` : "0"),
        (p) => refusalText(p.refused),
        (p) => ident(p.url),
      ],
      "No neighbours configured.",
    );
  }

  function renderQueues(data) {
    const queues = data.queues;
    fillTable(
      "queues",
      queues.next_hops,
      [
        (q) => ident(q.next_hop),
        (q) => num(q.count),
        (q) => num(bytes(q.bytes)),
        (q) => when(q.oldest_ms),
        (q) => num(duration(q.oldest_age_s)),
      ],
      "Nothing waiting for any next hop.",
    );
    fillFacts("queue-totals", [
      ["Waiting for next hops", `${queues.total.count} (${bytes(queues.total.bytes)})`],
      ["Inbox for this node's systems", `${queues.inbox.count} (${bytes(queues.inbox.bytes)})`],
    ]);
    fillFacts("counters", Object.entries(data.counters).map(([k, v]) => [k.replace(/_/g, " "), v]));
  }

  function renderRefusals(data) {
    fillTable(
      "refusals",
      data.refusals,
      [
        (r) => ident(r.peer),
        (r) => r.address,
        (r) => ident(r.refused_by),
        (r) => state(r.reason, "state-refused"),
        (r) => r.kind,
        (r) => when(r.first_ms),
        (r) => when(r.last_ms),
        (r) => num(r.count),
      ],
      "No refusal stands.",
    );
  }

  // Working days after today up to the deadline: 0 is "due today"; past it, "overdue".
  function daysLeft(r) {
    if (r.overdue) return state("overdue", "state-expired");
    if (r.working_days_left === 0) return state("due today", "state-expiring");
    return state(`${r.working_days_left}`, r.working_days_left <= 2 ? "state-expiring" : "state-ok");
  }

  function renderSubscriptions(data) {
    const subs = data.subscriptions;
    $("answer-days").textContent =
      `A conditional request must be answered within ${subs.answer_days} working days ` +
      "(China Standard Time; holidays and make-up days as configured).";
    fillTable(
      "waiting",
      subs.waiting,
      [
        (r) => when(r.at_ms),
        (r) => ({ text: r.request_id.slice(0, 12), title: r.request_id }),
        (r) => ident(r.requester),
        (r) => `${r.resource_code} of ${r.provider}`,
        (r) => r.purpose,
        (r) => r.items.join(", "),
        (r) => when(r.deadline_ms),
        (r) => daysLeft(r),
      ],
      "No request waits for an answer.",
    );
    fillTable(
      "cases",
      subs.cases,
      [
        (c) => when(c.at_ms),
        (c) => ({ text: c.request_id.slice(0, 12), title: c.request_id }),
        (c) => ident(c.requester),
        (c) => ident(c.provider),
        (c) => ident(c.resource_code),
        (c) => num(c.round),
        (c) => c.grounds,
        (c) => c.reason,
      ],
      "No escalation open.",
    );
  }

  function renderAudit(data) {
    const audit = data.audit;
    const head = audit.last_head;
    const nowMs = data.node.now_ms;
    const headText = !head
      ? "none yet"
      : head.error
        ? `unreadable: ${head.error}`
        : `${head.tree_size} records, signed ${iso(head.time_ms)} (${duration((nowMs - head.time_ms) / 1000)} ago)`;
    fillFacts("audit-facts", [
      ["Records", audit.size],
      ["Last signed head", headText],
      ["Root", head && head.root ? head.root : "—"],
      ["Records since that head (sealed)", audit.unsigned_records],
      ["Head interval", `${audit.head_interval} s`],
    ]);
    fillTable(
      "witnessed",
      audit.witnessed,
      [
        (w) => ident(w.child),
        (w) => num(w.kept_size),
        (w) => when(w.kept_time),
        (w) =>
          w.verdict === null
            ? state("not yet", "state-unknown")
            : state(w.verdict, w.verdict_ok ? "state-ok" : "state-expired"),
        (w) => when(w.verdict_time),
        (w) => when(w.checked),
        (w) => num(w.failures),
        (w) => w.error,
      ],
      "This node witnesses no children.",
    );
  }

  function renderCertificates(data) {
    fillTable(
      "certificates",
      data.certificates.certificates,
      [
        (c) => c.kind,
        (c) => ({ text: c.subject, title: `serial ${c.serial}` }),
        (c) => c.issuer,
        (c) => when(c.not_after),
        (c) => num(c.days_left),
        (c) => state(c.state),
      ],
      "No certificate.",
    );
    fillTable(
      "crls",
      data.crls.crls,
      [
        (c) => c.issuer,
        (c) => num(c.number),
        (c) => when(c.this_update),
        (c) => when(c.next_update),
        (c) => num(duration(c.seconds_left)),
        (c) => num(c.revoked),
        (c) => state(c.state),
      ],
      "No CRL held.",
    );
    fillList(
      "crl-warnings",
      data.crls.warnings.map((w) => ({ text: `${w.issuer}: ${w.state} — ${w.problem}`, cls: "warning" })),
      null,
    );
  }

  function renderAttention(data) {
    const lines = [];
    for (const p of data.neighbours) {
      if (p.state === "down") lines.push(`Neighbour ${p.name} is down (${p.failures} failures).`);
      if (p.state === "refused") lines.push(`Neighbour ${p.name} is refused: ${refusalText(p.refused)}.`);
    }
    for (const c of data.certificates.warnings) {
      lines.push(`Certificate ${c.subject} is ${c.state} (${c.days_left} days left, not after ${iso(c.not_after)}).`);
    }
    for (const w of data.crls.warnings) lines.push(`CRL of ${w.issuer} is ${w.state}.`);
    for (const r of data.subscriptions.waiting) {
      const request = `Request ${r.request_id.slice(0, 12)} from ${r.requester}`;
      if (r.overdue) lines.push(`${request} is past its deadline (${iso(r.deadline_ms)}).`);
      else if (r.working_days_left === 0) lines.push(`${request} is due today.`);
      else if (r.working_days_left <= 2) lines.push(`${request}: ${r.working_days_left} working days left.`);
    }
    for (const w of data.audit.witnessed) {
      if (w.verdict !== null && !w.verdict_ok) lines.push(`Child ${w.child}'s audit log: ${w.verdict}.`);
    }
    if (data.refusals.length) lines.push(`${data.refusals.length} refusal(s) stand (see Refusals).`);
    fillList(
      "attention",
      lines.map((line) => ({ text: line, cls: "warning" })),
      "Nothing needs attention.",
    );
  }

  function render(data) {
    renderNode(data);
    renderAttention(data);
    renderNeighbours(data);
    renderQueues(data);
    renderRefusals(data);
    renderSubscriptions(data);
    renderAudit(data);
    renderCertificates(data);
  }

  function renderCatalog(data) {
    $("catalog-count").textContent =
      `${data.found} of ${data.held} found` + (data.found > data.records.length ? `, first ${data.records.length} shown` : "");
    fillTable(
      "catalog",
      data.records,
      [
        (r) => ident(r.code),
        (r) => ident(r.provider),
        (r) => (r.entry ? r.entry.name : r.reason),
        (r) => (r.entry ? r.entry.share_type : "—"),
        (r) => (r.entry ? r.entry.update_cycle : "—"),
        (r) => state(r.status),
        (r) => num(r.version),
        (r) => when(r.issued_ms),
      ],
      "No catalog entry matches.",
    );
  }

  // --- the session ------------------------------------------------------------------------

  function catalogPath() {
    const params = new URLSearchParams({ q: $("catalog-q").value, status: $("catalog-status").value });
    return `/v1/console/catalog?${params}`;
  }

  async function refresh() {
    const session = generation;
    if (busy) return;
    busy = true;
    try {
      const [overview, catalog] = await Promise.all([read("/v1/console/overview"), read(catalogPath())]);
      if (session !== generation) return;
      render(overview);
      renderCatalog(catalog);
      loaded = true;
      showProblem("");
      showConsole();
    } catch (error) {
      if (session !== generation) return;
      const reason = error.message || String(error);
      if (error instanceof Refused && (error.status === 401 || error.status === 403)) {
        signOut(
          error.status === 401
            ? "Sign-in refused: this node does not know that token."
            : `Sign-in refused: ${reason}.`,
        );
      } else if (!loaded) {
        signOut(`Sign-in failed: this node could not be read (${reason}).`);
      } else {
        showProblem(`Refresh failed at ${iso(Date.now())}: ${reason}. Showing the last data read.`);
      }
    } finally {
      busy = false;
    }
  }

  async function searchCatalog() {
    const session = generation;
    try {
      const catalog = await read(catalogPath());
      if (session === generation) renderCatalog(catalog);
    } catch (error) {
      if (session === generation) showProblem(`Catalog search failed: ${error.message || error}`);
    }
  }

  function showConsole() {
    $("sign-in").hidden = true;
    $("console").hidden = false;
    $("session").hidden = false;
  }

  function showSignIn() {
    $("console").hidden = true;
    $("session").hidden = true;
    $("sign-in").hidden = false;
    $("token").focus();
  }

  function start() {
    if (running) return;
    running = true;
    generation += 1;
    loaded = false;
    refresh();
    timer = setInterval(refresh, REFRESH_MS);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    generation += 1;
    running = false;
    busy = false;
    if (timer !== null) clearInterval(timer);
    timer = null;
    for (const id of ["neighbours", "queues", "refusals", "waiting", "cases", "witnessed", "certificates", "crls", "catalog"]) {
      $(id).tBodies[0].replaceChildren();
    }
    $("node-name").textContent = "";
    showProblem(message || "");
    showSignIn();
  }

  function init() {
    $("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      $("token").value = "";
      if (!token) {
        showProblem("Give the token of this node's administrator or auditor.");
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      showProblem("");
      start();
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    $("catalog-q").addEventListener("input", () => {
      if (searchTimer !== null) clearTimeout(searchTimer);
      searchTimer = setTimeout(searchCatalog, SEARCH_DELAY_MS);
    });
    $("catalog-status").addEventListener("change", searchCatalog);
    if (sessionStorage.getItem(TOKEN_KEY)) start();
    else showSignIn();
  }

  init();
})();
