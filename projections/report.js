/* baton report: inlined into the page by projections/report.py, which embeds the run as
   JSON. Every value from the run is set as text or as an attribute, never as markup. */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("baton-data").textContent);
  const S = data.summary;
  const seqMode = data.axis.unit === "seq";
  const attempts = new Map(data.attempts.map((a) => [a.id, a]));
  const tasks = new Map(data.tasks.map((t) => [t.id, t]));
  const svg = document.getElementById("timeline-svg");
  const SVG_NS = svg.namespaceURI; // an inline <svg> is in the SVG namespace already
  const OUTCOMES = ["accepted", "rejected", "failed", "timed out", "lost", "superseded",
    "abandoned", "in flight"];
  const MARKS = {
    retry: "retried", reassign: "reassigned", escalate: "escalated to a person",
    abandon: "abandoned", accept: "accepted", stuck: "worker stuck", replaced: "worker replaced",
    resent: "re-sent after a restart", late: "late answer, ignored",
    sent_back: "sent back by the check",
  };
  const RUN_MARKS = {
    restart: "coordinator restarted", cancel: "cancel requested", answer: "a person answered",
    validated: "a person's output judged", fork: "forked", end: "run ended",
  };
  const TASK_ROWS = 1000;
  const CHILDREN_LISTED = 50; // child runs the summary links to
  const ROW = 14, GAP = 3, PAD_Y = 6, AXIS = 24, PAD_X = 14, MAX_ROWS = 6, MIN_W = 3;

  const $ = (id) => document.getElementById(id);

  /** An element with properties (class, text, on*, attributes) and children. */
  function h(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid !== null && kid !== undefined && kid !== false) node.append(kid);
    }
    return node;
  }

  /** An SVG element with attributes. */
  function s(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  const cls = (outcome) => String(outcome).toLowerCase().replace(/[^a-z0-9]+/g, "-");
  const badge = (text) => h("span", { class: "badge " + cls(text), text: text });
  const mono = (text) => h("code", { text: text });

  function dur(sec) {
    if (sec === null || sec === undefined) return "–";
    const a = Math.abs(sec);
    if (a === 0) return "0";
    if (a < 1e-3) return (sec * 1e6).toFixed(0) + " µs";
    if (a < 1) return (sec * 1e3).toFixed(a < 0.01 ? 2 : 0) + " ms";
    if (a < 60) return sec.toFixed(a < 10 ? 2 : 1) + " s";
    if (a < 3600) return Math.floor(sec / 60) + " min " + Math.round(sec % 60) + " s";
    return Math.floor(sec / 3600) + " h " + Math.round((sec % 3600) / 60) + " min";
  }

  function clock(rel) {
    if (data.axis.t0 === null || rel === null || rel === undefined) return "";
    return new Date((data.axis.t0 + rel) * 1000).toLocaleTimeString();
  }

  /** A point on the axis, for people: seconds from the start and the wall clock. */
  function when(rel) {
    if (rel === null || rel === undefined) return "–";
    if (seqMode) return "seq " + rel;
    return "+" + dur(rel) + " (" + clock(rel) + ")";
  }

  /** When something happened and its seq: "+1.20 s (10:13:22) · seq 53", or "seq 53". */
  function at(rel, seq) {
    return seqMode ? "seq " + seq : when(rel) + " · seq " + seq;
  }

  function json(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function count(n, one, many) {
    return n.toLocaleString() + " " + (n === 1 ? one : (many || one + "s"));
  }

  // --- header, summary, stats --------------------------------------------------------

  function header() {
    $("run-id").textContent = S.run_id;
    $("run-status").append(badge(S.status));
    $("goal").textContent = S.goal || "";
    if (S.error) {
      $("run-error").textContent = S.error;
      $("run-error").hidden = false;
    }
  }

  function card(label, value, subs) {
    return h("div", { class: "card" },
      h("div", { class: "label", text: label }),
      h("div", { class: "value" }, value),
      subs && subs.length ? h("div", { class: "sub" }, subs) : null);
  }

  function counts(map, order) {
    const keys = Object.keys(map).sort((a, b) => {
      const i = order.indexOf(a), j = order.indexOf(b);
      return (i < 0 ? 99 : i) - (j < 0 ? 99 : j) || a.localeCompare(b);
    });
    return keys.map((k) => h("span", {},
      h("span", { class: "swatch o-" + cls(k), style: "width:8px;height:8px;margin:0 3px 0 0" }),
      k + " " + map[k].toLocaleString()));
  }

  function summary() {
    const box = $("summary");
    const recoveries = Object.values(S.recoveries).reduce((a, b) => a + b, 0);
    box.append(
      card("status", badge(S.status), S.forked_from ? ["forked from " + S.forked_from] : null),
      card("tasks", S.tasks.toLocaleString(), [
        ...counts(S.task_status, ["accepted", "abandoned", "escalated", "in_flight"]),
        h("span", { text: S.tasks_with_failures + " had attempts fail" })]),
      card("attempts", S.attempts.toLocaleString(), counts(S.attempt_outcomes, OUTCOMES)),
      card("recoveries", recoveries.toLocaleString(), Object.entries(S.recoveries).map(
        ([k, n]) => h("span", { text: k + " " + n }))),
      card("escalations", S.escalations.toLocaleString(),
        S.open_escalations.length ? [S.open_escalations.length + " open"] : null),
      card("workers replaced", S.workers_replaced.toLocaleString(),
        S.restarts ? [count(S.restarts, "coordinator restart")] : null),
      card("events", S.events.toLocaleString()),
      card("makespan", S.makespan_s === null ? "–" : dur(S.makespan_s),
        S.requested_at ? ["from " + new Date(S.requested_at * 1000).toLocaleString()] : null),
    );
    if (S.policy) box.append(card("policy", h("span", { class: "mono", style: "font-size:12px",
      text: S.policy })));
    if (S.spent || S.budget) box.append(card("spent", h("span", { style: "font-size:13px",
      text: S.spent || "nothing reported" }), S.budget ? [S.budget] : null));
    const page = (run) => h("a", { class: "mono", href: encodeURIComponent(run.href),
      text: run.run_id });
    if (S.parent) box.append(card("a child run of", page(S.parent),
      ["it answers " + S.parent.assignment_id]));
    if (S.children.length) box.append(card("child runs", S.children.length.toLocaleString(),
      [...S.children.slice(0, CHILDREN_LISTED).map((c) => h("div", {},
        c.assignment_id + " \u2192 ", page(c), c.outcome ? " (" + c.outcome + ")" : "")),
       S.children.length > CHILDREN_LISTED ? "\u2026 and " +
         (S.children.length - CHILDREN_LISTED) + " more" : null]));
  }

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

  function fmt(v) {
    if (typeof v === "number") {
      return Number.isInteger(v) ? v.toLocaleString() : v.toLocaleString(undefined,
        { maximumFractionDigits: 3 });
    }
    return v === null || v === undefined ? "–" : typeof v === "string" ? v : JSON.stringify(v);
  }

  function table(columns, rows) {
    return h("table", { class: "small" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { text: c })))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map((v) => h("td", { text: fmt(v) }))))));
  }

  function union(rows) {
    const seen = [];
    for (const row of rows) for (const k of Object.keys(row)) if (!seen.includes(k)) seen.push(k);
    return seen;
  }

  /** Stats as tables: rows (a list of dicts), a dict of rows, a dict of values, a value. */
  function statBlock(value) {
    if (Array.isArray(value) && value.length && value.every(isObject)) {
      const columns = union(value);
      return table(columns, value.map((row) => columns.map((c) => row[c])));
    }
    if (isObject(value)) {
      const rows = Object.values(value);
      if (rows.length && rows.every(isObject)) {
        const columns = union(rows);
        return table(["", ...columns], Object.entries(value).map(
          ([k, row]) => [k, ...columns.map((c) => row[c])]));
      }
      return table(["", ""], Object.entries(value));
    }
    return h("p", { text: fmt(value) });
  }

  function stats() {
    if (!data.stats) return;
    const box = $("stats");
    for (const [name, value] of Object.entries(data.stats)) {
      box.append(h("h3", { text: name }), statBlock(value));
    }
    box.hidden = false;
  }

  // --- the timeline ------------------------------------------------------------------

  let zoom = 1;
  const bars = new Map(); // assignment id -> its rect
  const scroller = $("lane-scroll");

  function span(a) {
    if (seqMode) return [a.dispatch_seq, a.end_seq === null ? data.axis.end : a.end_seq];
    const x = a.execution;
    if (x && x.started_at !== null) return [x.started_at, x.ended_at];
    return [a.dispatched_at === null ? 0 : a.dispatched_at,
      a.end_at === null ? data.axis.end : a.end_at];
  }

  const domain = (() => {
    let lo = seqMode ? Infinity : 0, hi = data.axis.end;
    for (const a of data.attempts) {
      const [b, e] = span(a);
      lo = Math.min(lo, b, a.dispatched_at === null ? b : a.dispatched_at);
      hi = Math.max(hi, e);
    }
    if (!isFinite(lo)) lo = 0;
    if (seqMode) lo = Math.max(0, lo - 1);
    return [lo, hi > lo ? hi : lo + 1];
  })();

  function ticks(width) {
    const [lo, hi] = domain;
    const rough = (hi - lo) / Math.max(2, width / 110);
    const p = Math.pow(10, Math.floor(Math.log10(rough)));
    let step = [1, 2, 5, 10].map((m) => m * p).find((v) => v >= rough) || 10 * p;
    if (seqMode) step = Math.max(1, Math.round(step));
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(v);
    return out;
  }

  function marker(kind, x, y) {
    const g = s("g", { class: "marker " + kind, transform: "translate(" + x + "," + y + ")" });
    const shapes = {
      retry: () => s("circle", { r: 3.5 }),
      reassign: () => s("path", { d: "M0,-4.5L4.5,0L0,4.5L-4.5,0Z" }),
      escalate: () => s("path", { d: "M0,-5L5,4L-5,4Z", style: "fill:#f2b632" }),
      abandon: () => s("path", { d: "M-3.5,-3.5L3.5,3.5M3.5,-3.5L-3.5,3.5", style: "stroke-width:2" }),
      accept: () => s("circle", { r: 3.5, style: "fill:#2f9e5b" }),
      stuck: () => s("rect", { x: -3.5, y: -3.5, width: 7, height: 7, style: "fill:#f2b632" }),
      replaced: () => s("rect", { x: -3.5, y: -3.5, width: 7, height: 7, style: "fill:#c0392b" }),
      resent: () => s("circle", { r: 2.5, style: "fill:#111" }),
      late: () => s("circle", { r: 2.5, style: "fill:#9aa3ad" }),
      sent_back: () => s("path", { d: "M4.5,-4.5L-4.5,0L4.5,4.5Z", style: "fill:#8e44ad" }),
    };
    g.append((shapes[kind] || shapes.late)());
    return g;
  }

  function legend() {
    const box = $("legend");
    const present = new Set(data.attempts.map((a) => a.outcome));
    for (const o of OUTCOMES.filter((o) => present.has(o))) {
      box.append(h("span", { class: "item" }, h("span", { class: "swatch o-" + cls(o) }), o));
    }
    const used = new Set();
    for (const a of data.attempts) {
      if (a.recovery) used.add(a.recovery.action);
      for (const m of a.marks) used.add(m.kind);
    }
    for (const kind of Object.keys(MARKS).filter((k) => used.has(k))) {
      const icon = s("svg", { width: 12, height: 12, viewBox: "-6 -6 12 12" });
      icon.append(marker(kind, 0, 0));
      box.append(h("span", { class: "item", "data-marker": kind }, icon, MARKS[kind]));
    }
    if (data.attempts.some((a) => !a.execution)) {
      box.append(h("span", { class: "item", title: "no worker said where it ran: drawn from " +
        "its dispatch to what ended it, on its handler's 'no report' lane" },
        h("span", { class: "swatch", style: "border:1px dashed #333;background:#ccc" }),
        "no report from a worker"));
    }
    $("axis-unit").textContent = seqMode
      ? "(by seq: this log has no clock readings)"
      : "(seconds from the run's start; bars run from the handler's start to its end, " +
        "whiskers from the dispatch)";
    if (data.drawn_note) {
      $("drawn-note").textContent = data.drawn_note;
      $("drawn-note").hidden = false;
    }
  }

  function layout(x) {
    const byLane = new Map(data.lanes.map((l) => [l.id, []]));
    for (const a of data.attempts) {
      const [b, e] = span(a);
      const x1 = x(b);
      byLane.get(a.lane).push({ a: a, x1: x1, x2: Math.max(x(e), x1 + MIN_W) });
    }
    let top = AXIS;
    return data.lanes.map((lane) => {
      const placed = byLane.get(lane.id).sort((p, q) => p.x1 - q.x1);
      const ends = [];
      for (const bar of placed) {
        let row = ends.findIndex((end) => end <= bar.x1 + 0.5); // touching is not overlapping
        if (row < 0 && ends.length < MAX_ROWS) row = ends.push(0) - 1;
        if (row < 0) row = ends.indexOf(Math.min(...ends));
        ends[row] = bar.x2;
        bar.row = row;
      }
      const rows = Math.max(1, ends.length);
      const height = rows * ROW + (rows - 1) * GAP + 2 * PAD_Y;
      const out = { lane: lane, bars: placed, top: top, height: height };
      top += height;
      return out;
    });
  }

  function render() {
    const keep = scroller.scrollWidth ? (scroller.scrollLeft + scroller.clientWidth / 2) /
      scroller.scrollWidth : 0;
    const width = Math.max(400, (scroller.clientWidth || 800) * zoom);
    const [lo, hi] = domain;
    const x = (v) => PAD_X + ((v - lo) / (hi - lo)) * (width - 2 * PAD_X);
    const lanes = layout(x);
    const height = lanes.length ? lanes[lanes.length - 1].top + lanes[lanes.length - 1].height
      : AXIS + 30;
    const frag = document.createDocumentFragment();
    lanes.forEach((l, i) => {
      frag.append(s("rect", { class: "lane-bg" + (i % 2 ? " odd" : ""), x: 0, y: l.top,
        width: width, height: l.height }));
      frag.append(s("line", { class: "lane-sep", x1: 0, x2: width, y1: l.top + l.height,
        y2: l.top + l.height }));
    });
    for (const v of ticks(width)) {
      const g = s("g", { class: "tick" });
      g.append(s("line", { x1: x(v), x2: x(v), y1: AXIS - 6, y2: height }));
      const label = s("text", { x: x(v) + 3, y: 14 });
      label.textContent = seqMode ? "seq " + v : dur(v);
      g.append(label);
      frag.append(g);
    }
    for (const m of data.marks) { // beneath the bars: a bar stays clickable on a mark
      if (m.at === null) continue;
      const line = { x1: x(m.at), x2: x(m.at), y1: AXIS - 4, y2: height };
      frag.append(s("line", Object.assign({ class: "run-mark " + m.kind }, line)));
      const hit = s("line", Object.assign({ class: "run-mark-hit" }, line));
      const title = s("title", {});
      title.textContent = "seq " + m.seq + " · " + (RUN_MARKS[m.kind] || m.kind) + ": " + m.text;
      hit.append(title);
      frag.append(hit);
    }
    bars.clear();
    const markers = [];
    for (const l of lanes) {
      for (const bar of l.bars) {
        const a = bar.a;
        const y = l.top + PAD_Y + bar.row * (ROW + GAP);
        const mid = y + ROW / 2;
        if (!seqMode && a.execution && a.execution.started_at !== null &&
            a.dispatched_at !== null && a.dispatched_at < a.execution.started_at) {
          frag.append(s("line", { class: "whisker", x1: x(a.dispatched_at), x2: bar.x1,
            y1: mid, y2: mid }));
        }
        const rect = s("rect", {
          class: "bar o-" + cls(a.outcome) + (a.execution ? "" : " unplaced"),
          x: bar.x1, y: y, width: bar.x2 - bar.x1, height: ROW, rx: 2,
          "data-assignment": a.id, "data-task": a.task, "data-outcome": a.outcome,
        });
        bars.set(a.id, rect);
        frag.append(rect);
        if (a.recovery) markers.push(marker(a.recovery.action, bar.x2 + 6, mid));
        for (const m of a.marks) {
          if (!(m.kind in MARKS) || m.at === null) continue;
          markers.push(marker(m.kind, Math.max(x(m.at), bar.x1), y));
        }
      }
    }
    for (const m of markers) frag.append(m);
    svg.replaceChildren(frag);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    lanes.forEach((l) => {
      const label = laneLabels.get(l.lane.id);
      label.style.height = l.height + "px";
      label.title = l.lane.label + ": " + count(l.bars.length, "attempt");
    });
    scroller.scrollLeft = zoom === 1 ? 0 : keep * scroller.scrollWidth - scroller.clientWidth / 2;
    highlight();
  }

  /** The lanes' labels, made before the first drawing: their column's width decides
   * the timeline's. */
  const laneLabels = new Map();
  function labelLanes() {
    const box = $("lane-labels");
    box.append(h("div", { class: "axis-label", style: "height:" + AXIS + "px" }));
    for (const lane of data.lanes) {
      const label = h("div", { class: "lane-label", "data-lane": lane.id, text: lane.label });
      laneLabels.set(lane.id, label);
      box.append(label);
    }
    if (!data.lanes.length) {
      box.append(h("div", { class: "lane-label note", text: "no assignment was dispatched" }));
    }
  }

  function zoomBy(factor) {
    zoom = Math.min(4096, Math.max(1, zoom * factor));
    render();
  }

  // --- hover, selection, details -----------------------------------------------------

  const tooltip = $("tooltip");
  let selected = null; // the assignment id shown in the details
  let selectedTask = null; // the task whose trace is shown

  function placedOn(a) {
    const x = a.execution;
    return x ? a.handler + " · replica " + x.replica + " · pid " + x.pid
      : a.handler + " · no worker reported where it ran";
  }

  function took(a) {
    if (a.execution) return "ran " + dur(a.execution.took_s);
    if (seqMode || a.dispatched_at === null || a.end_at === null) return "";
    return "dispatch to " + (a.end_seq === null ? "the log's end" : "end") + ": " +
      dur(a.end_at - a.dispatched_at);
  }

  function showTooltip(a, ev) {
    tooltip.replaceChildren(
      h("div", { class: "t-title", text: a.id }),
      h("div", { class: "t-row", text: "task " + a.task + " · attempt " + a.attempt }),
      h("div", { class: "t-row", text: placedOn(a) }),
      h("div", {}, a.outcome + (a.problem ? ": " + a.problem : "")),
      h("div", { class: "t-row", text: [took(a), "routed by " + a.rule].filter(Boolean)
        .join(" · ") }),
      a.recovery ? h("div", { class: "t-row", text: "then " + a.recovery.action +
        (a.recovery.handler ? " on " + a.recovery.handler : "") }) : null,
      h("div", { class: "t-row", text: "click: details and the task's trace" }));
    tooltip.hidden = false;
    const pad = 14, w = tooltip.offsetWidth, hgt = tooltip.offsetHeight;
    let left = ev.clientX + pad, top = ev.clientY + pad;
    if (left + w > window.innerWidth) left = ev.clientX - w - pad;
    if (top + hgt > window.innerHeight) top = ev.clientY - hgt - pad;
    tooltip.style.left = Math.max(0, left) + "px";
    tooltip.style.top = Math.max(0, top) + "px";
  }

  function highlight() {
    for (const node of svg.querySelectorAll(".related, .selected")) {
      node.classList.remove("related", "selected");
    }
    svg.classList.toggle("has-selection", selectedTask !== null);
    if (selectedTask === null) return;
    const task = tasks.get(selectedTask);
    for (const id of task ? task.assignments : []) {
      const rect = bars.get(id);
      if (rect) rect.classList.add("related");
    }
    const chosen = selected && bars.get(selected);
    if (chosen) chosen.classList.add("selected");
    for (const row of document.querySelectorAll("#tasks tbody tr")) {
      row.classList.toggle("selected", row.dataset.task === selectedTask);
    }
  }

  function field(name, ...value) {
    return [h("dt", { text: name }), h("dd", {}, ...value)];
  }

  function kvList(obj) {
    const entries = Object.entries(obj || {});
    if (!entries.length) return "–";
    return h("div", {}, entries.map(([k, v]) => h("div", { class: "kv" },
      h("span", { class: "muted", text: k + ": " }), h("code", { text: json(v) }))));
  }

  function candidates(list) {
    if (!list || !list.length) return "–";
    const columns = union(list);
    return h("div", { class: "wide" }, table(columns, list.map((c) => columns.map((k) => c[k]))));
  }

  function markLine(m) {
    return h("div", { class: "kv" }, h("span", { class: "muted", text: "seq " + m.seq + " " }),
      (MARKS[m.kind] || m.kind) + ": " + m.text + (m.at === null || seqMode ? ""
        : " · " + when(m.at)));
  }

  function details(a) {
    const x = a.execution;
    const v = a.validation;
    const r = a.recovery;
    const taskButton = h("button", { class: "task-link", type: "button", text: a.task,
      title: "show this task's trace", onclick: () => showTrace(a.task, true) });
    const box = h("div", { "data-assignment": a.id },
      h("h3", {}, "assignment ", mono(a.id), " ", badge(a.outcome)),
      h("dl", { class: "fields" },
        field("task", taskButton),
        field("attempt", String(a.attempt) + (a.feedback ? " (given feedback from " +
          count(a.feedback, "earlier attempt") + ")" : "")),
        field("handler", a.handler),
        field("ran on", x ? "replica " + x.replica + " · pid " + x.pid +
          (x.node ? " · node " + x.node.slice(0, 12) : "") : "not reported by a worker"),
        field("dispatched", at(a.dispatched_at, a.dispatch_seq)),
        x && x.started_at !== null ? field("ran", when(x.started_at) + " for " + dur(x.took_s) +
          (a.dispatched_at !== null && !seqMode ? " (waited " +
            dur(x.started_at - a.dispatched_at) + " after its dispatch)" : "")) : null,
        x && x.started_at === null ? field("ran for", dur(x.took_s)) : null,
        field("ended", a.end_seq === null ? "not yet (in flight when the log ends)"
          : at(a.end_at, a.end_seq)),
        field("outcome", badge(a.outcome), a.problem ? " " + a.problem : ""),
        field("validation", v ? v.outcome + " · " : "none: no output was judged",
          v ? mono(v.rule) : null, v ? " · seq " + v.seq : null),
        v ? field("validated in state", mono(v.state_digest)) : null,
        field("routed by", mono(a.rule)),
        field("routing facts", kvList(a.facts)),
        field("candidates", candidates(a.candidates)),
        field("state digest", mono(a.state_digest),
          h("div", { class: "note", text: "the state the dispatch decision looked at" })),
        field("then", r ? h("span", {}, r.action + (r.handler ? " on " + r.handler : "") + " · ",
          mono(r.rule), " · seq " + r.seq) : "nothing: " + (a.outcome === "accepted"
          ? "the output was accepted" : "no recovery was chosen for this attempt")),
        a.marks.length ? field("also", a.marks.map(markLine)) : null,
        a.usage ? field("spent", spent(a.usage)) : null,
        a.output ? field("output", h("pre", { text: a.output })) : null,
        a.transcript.length ? field("transcript", h("pre", { class: "transcript",
          text: a.transcript.join("\n") }), h("div", { class: "note", text: "in short: `baton " +
          "trace " + S.run_id + " " + a.task + " --json` has every message whole" })) : null));
    $("details").replaceChildren(box);
  }

  /** What an answer spent: its model, requests, tokens, and dollars where priced. */
  function spent(u) {
    const cost = u.cost_usd === undefined ? "cost unknown (no price for this model)"
      : "$" + u.cost_usd.toFixed(4);
    return [u.model, count(u.requests, "request"), (u.input_tokens || 0).toLocaleString() +
      " tokens in, " + (u.output_tokens || 0).toLocaleString() + " out", cost].join(" · ");
  }

  function select(id, fromHash) {
    const a = attempts.get(id);
    if (!a) return;
    selected = id;
    details(a);
    showTrace(a.task, false);
    if (!fromHash) setHash("a=" + encodeURIComponent(id));
  }

  function showTrace(taskId, scroll) {
    const task = tasks.get(taskId);
    if (!task) return;
    selectedTask = taskId;
    if (!selected || !task.assignments.includes(selected)) {
      selected = null;
      $("details").replaceChildren(taskDetails(task));
    }
    const steps = Object.hasOwn(data.traces, taskId) ? data.traces[taskId] : undefined;
    const box = $("trace");
    box.replaceChildren(
      h("h3", {}, "trace of ", mono(taskId), " ", badge(task.status)),
      h("p", { class: "note", text: "What led to this task's outcome, newest first: the " +
        "chain `baton trace " + S.run_id + " " + taskId + "` prints." }),
      steps ? h("ol", { class: "steps", "data-task": taskId }, steps.map(step))
        : h("p", { class: "note", text: "Not embedded: the report keeps the traces of " +
          Object.keys(data.traces).length.toLocaleString() + " of " +
          data.tasks.length.toLocaleString() + " tasks (those not accepted first). " +
          "`baton trace " + S.run_id + " " + taskId + "` prints it." }));
    box.hidden = false;
    highlight();
    if (scroll) box.scrollIntoView({ block: "start" });
    if (!selected) setHash("task=" + encodeURIComponent(taskId));
  }

  function step(st) {
    const rows = [];
    if (st.state_digest) rows.push(["state", st.state_digest]);
    for (const [k, v] of Object.entries(st.detail || {})) rows.push([k, v]);
    if (st.facts && Object.keys(st.facts).length) rows.push(["facts", st.facts]);
    if (st.candidates && st.candidates.length) rows.push(["candidates", st.candidates]);
    return h("li", { class: "step", "data-seq": st.seq, "data-type": st.type },
      h("div", { class: "head" }, h("span", { class: "seq", text: st.seq }), st.type),
      h("div", { text: st.what }),
      st.rule ? h("div", { class: "rule", text: st.rule }) : null,
      rows.map(([k, v]) => h("div", { class: "kv" }, h("span", { class: "k", text: k + ":" }),
        h("code", { text: json(v) }))));
  }

  function taskDetails(t) {
    return h("div", { "data-task": t.id },
      h("h3", {}, "task ", mono(t.id), " ", badge(t.status)),
      h("dl", { class: "fields" },
        field("capability", t.capability + (t.required ? "" : " (optional)")),
        field("attempts", t.assignments.length ? t.assignments.map((id) => {
          const a = attempts.get(id);
          return h("div", {}, h("button", { class: "task-link", type: "button", text: id,
            onclick: () => select(id, false), disabled: a ? null : true }),
          " ", a ? badge(a.outcome) : h("span", { class: "note", text: "not drawn" }));
        }) : "none dispatched"),
        field("handler", t.handler || "–"),
        field("outcome", t.outcome || "–")));
  }

  function setHash(value) {
    try {
      history.replaceState(null, "", "#" + value);
    } catch (e) {
      /* a file opened in a sandbox may refuse; the page works without it */
    }
  }

  function fromHash() {
    let hash;
    try {
      hash = decodeURIComponent(location.hash.slice(1));
    } catch (_) {
      return; // a malformed link: show the page as it is
    }
    if (hash.startsWith("a=")) select(hash.slice(2), true);
    else if (hash.startsWith("task=")) showTrace(hash.slice(5), false);
  }

  // --- tasks and run events ----------------------------------------------------------

  function chips(t) {
    return h("span", { class: "chips" }, t.assignments.slice(0, 12).map((id) => {
      const a = attempts.get(id);
      const outcome = a ? a.outcome : "not drawn";
      return h("span", { class: "chip o-" + cls(outcome), title: id + ": " + outcome,
        "data-outcome": outcome });
    }));
  }

  function renderTasks() {
    const q = $("task-filter").value.trim().toLowerCase();
    const status = $("status-filter").value;
    const matching = data.tasks.filter((t) => (!status || t.status === status) && (!q ||
      [t.id, t.handler || "", t.outcome, t.status, t.capability].some(
        (v) => v.toLowerCase().includes(q))));
    const shown = matching.slice(0, TASK_ROWS);
    $("tasks").tBodies[0].replaceChildren(...shown.map((t) => h("tr", {
      "data-task": t.id, class: t.id === selectedTask ? "selected" : null,
      onclick: () => showTrace(t.id, false),
    },
    h("td", {}, h("button", { class: "task-link", type: "button", text: t.id,
      title: "show its trace" }), t.required ? null : h("span", { class: "note",
      text: " optional" }), chips(t)),
    h("td", {}, badge(t.status)),
    h("td", { text: t.attempts }),
    h("td", { text: t.handler || "–" }),
    h("td", { class: "outcome", text: t.outcome === t.status ? "" : t.outcome }))));
    $("task-count").textContent = "(" + (matching.length === data.tasks.length
      ? data.tasks.length.toLocaleString()
      : matching.length.toLocaleString() + " of " + data.tasks.length.toLocaleString()) + ")";
    const more = $("tasks-more");
    more.hidden = matching.length <= TASK_ROWS;
    more.textContent = (matching.length - TASK_ROWS).toLocaleString() +
      " more match: narrow the filter to see them.";
  }

  function tasksTable() {
    const select = $("status-filter");
    for (const st of [...new Set(data.tasks.map((t) => t.status))].sort()) {
      select.append(h("option", { value: st, text: st }));
    }
    let pending = 0;
    $("task-filter").addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(renderTasks, 120);
    });
    select.addEventListener("change", renderTasks);
    renderTasks();
  }

  function runEvents() {
    const rows = data.marks.map((m) => h("tr", { "data-kind": m.kind },
      h("td", { text: m.seq }), h("td", { text: seqMode ? "–" : when(m.at) }),
      h("td", {}, (RUN_MARKS[m.kind] || m.kind) + " · ", h("span", { text: m.text }))));
    for (const e of S.open_escalations) {
      rows.push(h("tr", { "data-kind": "open-escalation" }, h("td", { text: "–" }),
        h("td", { text: "open" }), h("td", { text: "waiting on a person: " + e.id + " (" +
          e.task_id + "): " + e.question })));
    }
    $("run-events").tBodies[0].replaceChildren(...rows);
  }

  // --- wiring ------------------------------------------------------------------------

  header();
  summary();
  stats();
  legend();
  tasksTable();
  runEvents();
  labelLanes();
  render();
  fromHash();

  svg.addEventListener("mousemove", (ev) => {
    const rect = ev.target.closest ? ev.target.closest(".bar") : null;
    const a = rect && attempts.get(rect.getAttribute("data-assignment"));
    if (a) showTooltip(a, ev);
    else tooltip.hidden = true;
  });
  svg.addEventListener("mouseleave", () => { tooltip.hidden = true; });
  svg.addEventListener("click", (ev) => {
    const rect = ev.target.closest ? ev.target.closest(".bar") : null;
    if (rect) select(rect.getAttribute("data-assignment"), false);
  });
  scroller.addEventListener("wheel", (ev) => {
    if (!ev.ctrlKey) return;
    ev.preventDefault();
    zoomBy(ev.deltaY < 0 ? 1.5 : 1 / 1.5);
  }, { passive: false });
  $("zoom-in").addEventListener("click", () => zoomBy(2));
  $("zoom-out").addEventListener("click", () => zoomBy(0.5));
  $("zoom-fit").addEventListener("click", () => { zoom = 1; render(); });
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    selected = selectedTask = null;
    highlight();
  });
  let resizing = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(render, 150);
  });
  document.body.setAttribute("data-ready", "true");
})();
