// review.html: render, filter, diff and label the eval items embedded as JSON in #review-data.
// Every text from the data is set with textContent, never parsed as HTML, so outputs cannot inject markup.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("review-data").textContent);
  var PAGE = 20;           // items rendered per page (large sweeps stay fast)
  var MAX_EDITS = 600;     // diffs with more edits than this are skipped (noise, and slow)
  var LONG_TEXT = 4000;    // characters (both texts together) above which the diff is by words
  var NAME = {};
  D.models.forEach(function (m) { NAME[m.key] = m.name; });
  var P = 0;               // the primary metric is metrics[0]

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "n/a";
    if (v === Math.round(v)) return String(v);
    return v.toFixed(3);
  }

  var state = {
    adapter: D.adapter,
    baseline: D.baselines.indexOf("fewshot") >= 0 ? "fewshot" : (D.baselines[0] || null),
    filters: { disc: false, fail: false, err: false, know: false, judge: false, jlab: false, unlab: false },
    search: "", sort: "order", diff: "reference", pairOnly: false, page: 0,
    mode: "browse", queue: [], cursor: 0
  };

  // ------------------------------------------------------------------ labels (browser storage)
  var store = { labels: {}, persistent: true };
  try {
    var raw = window.localStorage.getItem(D.storage_key);
    if (raw) store.labels = (JSON.parse(raw) || {}).labels || {};
  } catch (e) { store.persistent = false; }
  function saveLabels() {
    try { window.localStorage.setItem(D.storage_key, JSON.stringify({ version: 1, labels: store.labels })); store.persistent = true; }
    catch (e) { store.persistent = false; }
    showStore();
  }
  function labelKey(it) { return it.id + "|" + state.adapter + "|" + state.baseline; }
  function labelOf(it) { return store.labels[labelKey(it)] || null; }
  function shownPair(it) {   // [model shown as A, model shown as B]: fixed per item, blind
    return it.flip ? [state.baseline, state.adapter] : [state.adapter, state.baseline];
  }
  function nLabels() {
    return Object.keys(store.labels).filter(function (k) { return hasContent(store.labels[k]); }).length;
  }
  function hasContent(r) { return r && (r.label !== null || r.score_1 !== null || r.score_2 !== null); }
  function showStore() {
    $("n-labels").textContent = String(nLabels());
    $("store-status").textContent = store.persistent ? "labels are kept in this browser's storage"
      : "browser storage is blocked here: download the labels before closing the page";
    $("store-status").className = store.persistent ? "note" : "warn";
  }
  function setLabel(it, field, value) {
    var key = labelKey(it), pair = shownPair(it), r = store.labels[key];
    var o1 = it.outputs[pair[0]], o2 = it.outputs[pair[1]];
    if (!r) {
      r = { sample_id: it.id, model_1: pair[0], model_2: pair[1], question: it.question, reference: it.reference,
            output_1: o1 ? o1.text : "", output_2: o2 ? o2.text : "", label: null, score_1: null, score_2: null };
    }
    r[field] = value;
    r.time = new Date().toISOString();
    if (hasContent(r)) store.labels[key] = r; else delete store.labels[key];
    saveLabels();
  }
  function labelRows() {    // the JSONL rows `harness judge calibrate --data` reads (.notes/labels_format.md)
    var rows = [];
    Object.keys(store.labels).sort().forEach(function (k) {
      var r = store.labels[k];
      if (!hasContent(r)) return;
      var base = { task: D.task, sample_id: r.sample_id, question: r.question, reference: r.reference };
      if (r.label !== null) {
        rows.push(Object.assign({ id: r.sample_id + ":" + r.model_1 + ":" + r.model_2 }, base,
          { output_1: r.output_1, output_2: r.output_2, model_1: r.model_1, model_2: r.model_2, label: r.label,
            score_1: r.score_1, score_2: r.score_2, time: r.time }));
      } else {  // scores without a comparison: one pointwise-only row per scored output
        [[r.model_1, r.output_1, r.score_1], [r.model_2, r.output_2, r.score_2]].forEach(function (s) {
          if (s[2] === null) return;
          rows.push(Object.assign({ id: r.sample_id + ":" + s[0] }, base,
            { output_1: s[1], model_1: s[0], score_1: s[2], time: r.time }));
        });
      }
    });
    return rows;
  }
  function download() {
    var rows = labelRows();
    if (!rows.length) { flash("no labels yet: press L to label the shown items"); return; }
    var text = rows.map(function (r) { return JSON.stringify(r); }).join("\n") + "\n";
    var d = new Date(), p2 = function (n) { return (n < 10 ? "0" : "") + n; };
    var stamp = "" + d.getFullYear() + p2(d.getMonth() + 1) + p2(d.getDate()) + "-" + p2(d.getHours()) + p2(d.getMinutes()) + p2(d.getSeconds());
    var a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" }));
    a.download = ("labels-" + (D.task || D.sweep) + "-" + stamp + ".jsonl").replace(/[^A-Za-z0-9._-]/g, "_");
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    flash("downloaded " + rows.length + " label(s) as " + a.download);
    $("next-step").textContent = "harness judge calibrate --data " + a.download + " --sweep " + sweepDir();
    $("next-step").parentNode.hidden = false;
  }
  function sweepDir() {   // where the page lives (SWEEP/report/review.html), known only at run time: the bytes stay fixed
    var m = /^(.*)\/report\/[^\/]+$/.exec(location.protocol === "file:" ? decodeURIComponent(location.pathname) : "");
    return m ? (/\s/.test(m[1]) ? JSON.stringify(m[1]) : m[1]) : "SWEEP_DIR";
  }
  function flash(msg) { $("shown").textContent = msg; }

  // ------------------------------------------------------------------ filters
  function pairKey() { return state.adapter + "|" + state.baseline; }
  function primaryOf(it, m) { var o = it.outputs[m]; return o && !o.error && o.metrics.length ? o.metrics[P] : null; }
  var unitRange = D.items.every(function (it) {
    return Object.keys(it.outputs).every(function (m) { var v = it.outputs[m].metrics[P]; return v === null || v === undefined || (v >= 0 && v <= 1); });
  });
  function isFailure(it, m) {
    var o = it.outputs[m];
    if (!o || o.error) return true;
    var v = o.metrics[P];
    return v === null || v === undefined || (unitRange ? v < 1 : v <= 0);
  }
  function judgeDisagreed(it) {
    return it.judge.some(function (j) {
      return j.consistent === false && ((j.a === state.adapter && j.b === state.baseline) || (j.a === state.baseline && j.b === state.adapter));
    });
  }
  function judgeVsLabel(it) {   // your label for the shown pair says one thing, the judge's verdict another
    var lab = labelOf(it);
    if (!lab || lab.label === null || lab.label === undefined) return false;
    var mine = lab.label === 0 ? "tie" : lab.label === 1 ? lab.model_1 : lab.model_2;
    return it.judge.some(function (j) {
      var same = (j.a === lab.model_1 && j.b === lab.model_2) || (j.a === lab.model_2 && j.b === lab.model_1);
      return same && j.verdict !== null && j.verdict !== undefined && j.verdict !== mine;
    });
  }
  var hay = D.items.map(function (it) {
    var parts = [it.id, it.question, it.reference || ""];
    Object.keys(it.outputs).forEach(function (m) { parts.push(it.outputs[m].text, it.outputs[m].error || ""); });
    return parts.join("\n").toLowerCase();
  });
  var TESTS = {
    disc: function (it) { return pairKey() in it.disc; },
    fail: function (it) { return isFailure(it, state.adapter); },
    err: function (it) { return Object.keys(it.outputs).some(function (m) { return !!it.outputs[m].error; }); },
    know: function (it) { return !!it.knowledge; },
    judge: judgeDisagreed,
    jlab: judgeVsLabel,
    unlab: function (it) { return !hasContent(labelOf(it)); }
  };
  function lenDiff(it) {
    var a = it.outputs[state.adapter], b = it.outputs[state.baseline];
    return a && b ? Math.abs(a.text.length - b.text.length) : -1;
  }
  function visible() {
    var q = state.search.toLowerCase(), out = [];
    D.items.forEach(function (it, i) {
      for (var f in state.filters) if (state.filters[f] && !TESTS[f](it)) return;
      if (q && hay[i].indexOf(q) < 0) return;
      out.push(i);
    });
    if (state.sort === "lendiff") out.sort(function (x, y) { return (lenDiff(D.items[y]) - lenDiff(D.items[x])) || (x - y); });
    else if (state.sort === "id") out.sort(function (x, y) { var a = D.items[x].id, b = D.items[y].id; return a < b ? -1 : a > b ? 1 : x - y; });
    return out;
  }

  // ------------------------------------------------------------------ character diff (Myers, O((N+M)D))
  function diffChars(a, b) {
    var pre = 0, n0 = a.length, m0 = b.length;
    while (pre < n0 && pre < m0 && a[pre] === b[pre]) pre++;
    var suf = 0;
    while (suf < n0 - pre && suf < m0 - pre && a[n0 - 1 - suf] === b[m0 - 1 - suf]) suf++;
    var A = a.slice(pre, n0 - suf), B = b.slice(pre, m0 - suf), N = A.length, M = B.length;
    if (Math.abs(N - M) > MAX_EDITS) return null;   // at least that many edits: no need to search
    var ops = [];
    if (pre) ops.push([0, a.slice(0, pre)]);
    if (N === 0 && M > 0) ops.push([1, B]);
    else if (M === 0 && N > 0) ops.push([-1, A]);
    else if (N > 0 && M > 0) {
      var max = Math.min(N + M, MAX_EDITS), off = max + 1, V = new Int32Array(2 * max + 3), trace = [], found = false;
      for (var d = 0; d <= max && !found; d++) {
        trace.push(V.slice(off - d - 1, off + d + 2));
        for (var k = -d; k <= d; k += 2) {
          var x = (k === -d || (k !== d && V[off + k - 1] < V[off + k + 1])) ? V[off + k + 1] : V[off + k - 1] + 1;
          var y = x - k;
          while (x < N && y < M && A[x] === B[y]) { x++; y++; }
          V[off + k] = x;
          if (x >= N && y >= M) { found = true; break; }
        }
      }
      if (!found) return null;
      var mid = [], x2 = N, y2 = M;
      for (var dd = trace.length - 1; dd >= 0; dd--) {
        var Vd = trace[dd], base = -dd - 1, kk = x2 - y2;   // Vd[i] holds V[k] for k = base + i
        var get = function (k) { return Vd[k - base]; };
        var prevK = (kk === -dd || (kk !== dd && get(kk - 1) < get(kk + 1))) ? kk + 1 : kk - 1;
        var px = dd === 0 ? 0 : get(prevK), py = px - prevK;
        while (x2 > px && y2 > py && x2 > 0 && y2 > 0 && A[x2 - 1] === B[y2 - 1]) { mid.push([0, A[x2 - 1]]); x2--; y2--; }
        if (dd > 0) {
          if (x2 === px) { mid.push([1, B[y2 - 1]]); y2--; } else { mid.push([-1, A[x2 - 1]]); x2--; }
        }
      }
      mid.reverse();
      mid.forEach(function (op) {   // merge runs of the same kind
        var last = ops[ops.length - 1];
        if (last && last[0] === op[0]) last[1] += op[1]; else ops.push([op[0], op[1]]);
      });
    }
    if (suf) ops.push([0, a.slice(n0 - suf)]);
    return readable(ops);
  }
  // Character diffs of unrelated text are confetti: equalities of 1-3 characters between two edits are folded
  // into the edits, then each run of edits becomes one deletion followed by one insertion.
  function readable(ops) {
    var out = [], del = "", ins = "";
    function flush() { if (del) out.push([-1, del]); if (ins) out.push([1, ins]); del = ins = ""; }
    ops.forEach(function (op, i) {
      var inner = i > 0 && i < ops.length - 1;
      if (op[0] === 0 && !(inner && op[1].length <= 3)) { flush(); out.push(op); }
      else if (op[0] === 0) { del += op[1]; ins += op[1]; }
      else if (op[0] < 0) del += op[1];
      else ins += op[1];
    });
    flush();
    return out;
  }
  // Word diff for texts too different for a character diff: each distinct word (or run of spaces, or
  // punctuation mark) becomes one private-use character, the character diff runs on those, and maps back.
  function diffWords(a, b) {
    var code = {}, words = [], next = 0xE000;
    function enc(s) {
      return (s.match(/\s+|[\w\u00C0-\uFFFF]+|[^\w\s]/g) || []).map(function (w) {
        if (!(w in code)) { if (next > 0xF8FF) throw new Error("too many words"); code[w] = String.fromCharCode(next++); words.push(w); }
        return code[w];
      }).join("");
    }
    var ops;
    try { ops = diffChars(enc(a), enc(b)); } catch (e) { return null; }
    if (!ops) return null;
    return ops.map(function (op) {
      var t = "";
      for (var i = 0; i < op[1].length; i++) t += words[op[1].charCodeAt(i) - 0xE000];
      return [op[0], t];
    });
  }
  function renderDiff(pre, against, text) {
    var long = against.length + text.length > LONG_TEXT;   // long texts: straight to the (cheaper) word diff
    var ops = long ? null : diffChars(against, text), words = false;
    if (!ops) { ops = diffWords(against, text); words = true; }
    pre.textContent = "";
    if (!ops) { pre.textContent = text; pre.appendChild(el("div", "note", "(diff skipped: more than " + MAX_EDITS + " word edits)")); return; }
    if (words) pre.title = "word diff (too many character edits for a character diff)";
    ops.forEach(function (op) {
      if (op[0] === 0) pre.appendChild(document.createTextNode(op[1]));
      else pre.appendChild(el(op[0] > 0 ? "ins" : "del", null, op[1]));
    });
  }
  var observer = ("IntersectionObserver" in window) ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) { if (e.isIntersecting) { observer.unobserve(e.target); e.target._diff(); } });
  }, { rootMargin: "400px" }) : null;
  function lazyDiff(pre, against, text) {
    pre.textContent = text;
    pre._diff = function () { renderDiff(pre, against, text); };
    if (observer) observer.observe(pre); else pre._diff();
  }

  // ------------------------------------------------------------------ browse view
  function discBadge(it) {
    var s = it.disc[pairKey()];
    if (!s) return null;
    return el("span", "badge " + (s > 0 ? "up" : "down"),
      s > 0 ? NAME[state.adapter] + " better than " + NAME[state.baseline] : NAME[state.baseline] + " better than " + NAME[state.adapter]);
  }
  function outputColumn(it, m) {
    var o = it.outputs[m], col = el("div", "col");
    if (m === state.adapter) col.className += " adapter-sel";
    if (m === state.baseline) col.className += " baseline-sel";
    var head = el("div", "head", NAME[m]);
    if (m !== NAME[m]) head.appendChild(el("small", null, " " + m));
    if (m === D.chosen) head.appendChild(el("small", null, " \u2605 chosen"));
    col.appendChild(head);
    if (!o) { col.appendChild(el("div", "empty", "no output for this item")); return col; }
    var chips = el("div", "chips");
    D.metrics.forEach(function (name, i) {
      var v = o.metrics[i];
      var c = el("span", "chip" + (i === P ? " primary" : "") + (v === 1 ? " pass" : v === 0 ? " fail" : ""), name + " " + fmt(v));
      var det = o.details && o.details[name];
      if (det !== undefined && det !== null) c.title = typeof det === "string" ? det : JSON.stringify(det);
      chips.appendChild(c);
    });
    if (o.finish && o.finish !== "stop" && o.finish !== "error") chips.appendChild(el("span", "chip fail", "finish: " + o.finish));
    if (o.tokens !== null && o.tokens !== undefined) chips.appendChild(el("span", "chip", o.tokens + " tokens"));
    col.appendChild(chips);
    if (o.error) col.appendChild(el("div", "error", "error: " + o.error));
    var pre = el("pre", "out");
    if (o.error && !o.text) { /* the error is the output */ }
    else if (!o.text) col.appendChild(el("div", "empty", "(empty output)"));
    else {
      var against = null;
      if (state.diff === "reference" && it.reference !== null) against = it.reference;
      if (state.diff === "baseline" && m !== state.baseline && it.outputs[state.baseline]) against = it.outputs[state.baseline].text;
      if (against === null) pre.textContent = o.text; else lazyDiff(pre, against, o.text);
      col.appendChild(pre);
    }
    var jp = it.judge_points[m];
    if (jp) col.appendChild(el("div", "note", "judge score " + fmt(jp.score) + (jp.reason ? ": " + jp.reason : "")));
    return col;
  }
  function judgeBlock(it) {
    if (!it.judge.length) return null;
    var box = el("div", "judge");
    it.judge.forEach(function (j) {
      var v = j.verdict === null || j.verdict === undefined ? "no verdict (missing)" : j.verdict === "tie" ? "tie" : (NAME[j.verdict] || j.verdict) + " wins";
      var line = el("div", null, "Judge: " + (NAME[j.a] || j.a) + " vs " + (NAME[j.b] || j.b) + " \u2192 " + v + " ");
      if (j.consistent === false) line.appendChild(el("span", "disagree", "(the two orders disagree)"));
      else if (j.consistent === true) line.appendChild(el("span", "note", "(both orders agree)"));
      box.appendChild(line);
      j.orders.forEach(function (o, k) {
        var pick = o.preferred === null || o.preferred === undefined ? "no verdict" : o.preferred === "tie" ? "tie" : (NAME[o.preferred] || o.preferred);
        var txt = "Order " + (k + 1) + " (A = " + (NAME[o.first] || o.first) + "): " + pick + (o.reason ? ": " + o.reason : "") + (o.error ? " [" + o.error + "]" : "");
        box.appendChild(el("div", "order", txt));
      });
    });
    return box;
  }
  function itemCard(it) {
    var art = el("article", "item");
    art.dataset.id = it.id;
    var h = el("h3", null, it.id);
    if (it.knowledge) h.appendChild(el("span", "badge", "knowledge"));
    var b = discBadge(it);
    if (b) h.appendChild(b);
    if (judgeDisagreed(it)) h.appendChild(el("span", "badge bad", "judge orders disagree"));
    if (judgeVsLabel(it)) h.appendChild(el("span", "badge bad", "judge disagrees with your label"));
    var lab = labelOf(it);
    if (hasContent(lab)) h.appendChild(el("span", "badge", "labelled"));
    art.appendChild(h);
    var sys = it.messages.filter(function (m) { return m.role === "system"; });
    if (sys.length) {
      var det = el("details"); det.appendChild(el("summary", "label", "system prompt"));
      det.appendChild(el("pre", "block", sys.map(function (m) { return m.content; }).join("\n"))); art.appendChild(det);
    }
    art.appendChild(el("div", "label", "prompt"));
    art.appendChild(el("pre", "block prompt", it.question));
    if (it.reference !== null) { art.appendChild(el("div", "label", "reference")); art.appendChild(el("pre", "block reference", it.reference)); }
    var models = state.pairOnly ? [state.adapter, state.baseline].filter(Boolean) : D.models.map(function (m) { return m.key; });
    var grid = el("div", "grid");
    grid.style.gridTemplateColumns = "repeat(" + models.length + ", minmax(240px, 1fr))";
    models.forEach(function (m) { grid.appendChild(outputColumn(it, m)); });
    art.appendChild(grid);
    var jb = judgeBlock(it);
    if (jb) art.appendChild(jb);
    return art;
  }
  function renderList() {
    var vis = visible(), pages = Math.max(1, Math.ceil(vis.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var list = $("list");
    list.textContent = "";
    if (observer) observer.disconnect();
    vis.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (i) { list.appendChild(itemCard(D.items[i])); });
    $("shown").textContent = "showing " + vis.length + " of " + D.items.length + " items";
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    list.dataset.visible = String(vis.length);
    return vis;
  }
  function renderCounts() {
    var d = D.discordant[pairKey()], box = $("disc-counts");
    box.textContent = "";
    if (!d || !D.primary) { box.textContent = state.adapter && state.baseline ? "" : "no adapter to compare"; }
    else {
      var A = NAME[state.adapter], B = NAME[state.baseline];
      var s1 = el("span", null, "on " + D.primary + ": " + A + (d.binary ? " passes, " + B + " fails: " : " higher: "));
      var b10 = el("b", null, d.b10); b10.id = "disc-b10";
      var s2 = el("span", null, (d.binary ? " (b10) \u00b7 " + A + " fails, " + B + " passes: " : " \u00b7 " + B + " higher: "));
      var b01 = el("b", null, d.b01); b01.id = "disc-b01";
      box.appendChild(s1); box.appendChild(b10); box.appendChild(s2); box.appendChild(b01);
      box.appendChild(el("span", null, (d.binary ? " (b01)" : "") + " of " + d.n + " paired items" +
        (d.p_value !== null ? " \u00b7 " + d.test + " p = " + d.p_value.toPrecision(3) : "")));
    }
    Object.keys(TESTS).forEach(function (f) {
      $("f-" + f).querySelector(".n").textContent = "(" + D.items.filter(TESTS[f]).length + ")";
    });
  }
  function refresh() {   // a change of pair or filters ends labelling: the queue was built for the old ones
    if (state.mode === "label") { leaveLabel(); return; }
    renderCounts(); showStore(); renderList();
  }

  // ------------------------------------------------------------------ label view (blind A/B)
  function labelable(it) {  // both outputs present and not failed requests: a label says which TEXT is better
    var a = it.outputs[state.adapter], b = it.outputs[state.baseline];
    return !!(a && b && !a.error && !b.error);
  }
  function enterLabel() {
    if (!state.adapter || !state.baseline) { flash("labelling needs an adapter and a baseline"); return; }
    var vis = visible(), queue = vis.filter(function (i) { return labelable(D.items[i]); });
    if (!queue.length) { flash("no items to label with these filters"); return; }
    state.mode = "label";
    state.queue = queue;   // frozen: labelling does not reshuffle the list under the person
    state.skipped = vis.length - queue.length;
    state.cursor = 0;
    $("list").hidden = true; document.querySelector(".pager").hidden = true; $("labeller").hidden = false;
    $("label-mode").textContent = "Back to the list (Esc)";
    renderLabeller();
  }
  function leaveLabel() {
    state.mode = "browse";
    $("list").hidden = false; document.querySelector(".pager").hidden = false; $("labeller").hidden = true;
    $("label-mode").textContent = "Label these items (L)";
    refresh();
  }
  function renderLabeller() {
    var it = D.items[state.queue[state.cursor]], box = $("lab-item"), pair = shownPair(it), lab = labelOf(it);
    var done = state.queue.filter(function (i) { return hasContent(labelOf(D.items[i])); }).length;
    $("lab-pos").textContent = "Item " + (state.cursor + 1) + " of " + state.queue.length + " (" + done + " labelled here, " + nLabels() + " in all) \u00b7 " + it.id + (it.knowledge ? " \u00b7 knowledge item" : "") +
      (state.skipped ? " \u00b7 " + state.skipped + " shown item(s) left out: an output is missing or its request failed" : "");
    box.textContent = "";
    box.dataset.id = it.id;
    box.appendChild(el("div", "label", "prompt"));
    box.appendChild(el("pre", "block", it.question));
    if (it.reference !== null) { box.appendChild(el("div", "label", "reference")); box.appendChild(el("pre", "block", it.reference)); }
    var grid = el("div", "pair");
    ["A", "B"].forEach(function (side, k) {
      var o = it.outputs[pair[k]], s = el("div", "side");
      s.id = "side-" + side;
      if (lab && lab.label === k + 1) s.className += " win";
      s.appendChild(el("h4", null, "Output " + side));
      if (!o) s.appendChild(el("div", "empty", "no output"));
      else {
        if (o.error) s.appendChild(el("div", "error", "error: " + o.error));
        if (o.text || !o.error) s.appendChild(el("pre", null, o.text || "(empty output)"));
      }
      var sc = lab ? lab["score_" + (k + 1)] : null;
      s.appendChild(el("div", "note", "your score: " + (sc === null || sc === undefined ? "\u2013" : sc + " / 5")));
      grid.appendChild(s);
    });
    box.appendChild(grid);
    var cur = !lab || lab.label === null ? "not labelled" : lab.label === 0 ? "tie" : (lab.label === 1 ? "A" : "B") + " is better";
    var p = el("p", null, "Your label: " + cur);
    p.id = "lab-current";
    box.appendChild(p);
  }
  function labelKeyDown(e) {
    var it = D.items[state.queue[state.cursor]], k = e.key, code = e.code || "";
    var digit = /^Digit([1-5])$/.exec(code) || /^Numpad([1-5])$/.exec(code);
    if (k === "Escape") { leaveLabel(); return true; }
    if (k === "ArrowRight" || k === "n" || k === "j") { state.cursor = Math.min(state.cursor + 1, state.queue.length - 1); renderLabeller(); return true; }
    if (k === "ArrowLeft" || k === "p" || k === "k") { state.cursor = Math.max(state.cursor - 1, 0); renderLabeller(); return true; }
    if (e.ctrlKey || e.metaKey || e.altKey) return false;
    var lower = k.length === 1 ? k.toLowerCase() : k;
    if (lower === "a" || lower === "b" || lower === "t") {
      setLabel(it, "label", lower === "a" ? 1 : lower === "b" ? 2 : 0);
      if (state.cursor < state.queue.length - 1) state.cursor++;
      renderLabeller();
      return true;
    }
    if (digit) { setLabel(it, e.shiftKey ? "score_2" : "score_1", parseInt(digit[1], 10)); renderLabeller(); return true; }
    if (k === "Backspace" || k === "Delete" || lower === "u") {
      delete store.labels[labelKey(it)]; saveLabels(); renderLabeller(); return true;
    }
    return false;
  }

  // ------------------------------------------------------------------ forgetting probes (base vs one adapter)
  // The flags (regressed / improved / bleed) come computed from Python (harness.report.review.probe_data), so the
  // counts here are the report's; this code only filters, paginates and renders. URL anchors
  // #probes[-regressed|-bleed|-improved][/FAMILY] open this view with that filter (the report links to them).
  var PR = D.probes || { models: [], adapters: [], families: [], items: [], bleed_measured: false };
  var PFILTERS = ["all", "regressed", "bleed", "improved"];
  var PHASH = /^#probes(?:-(all|regressed|bleed|improved))?(?:\/(.*))?$/;
  var hasBase = PR.models.indexOf("base") >= 0;
  var pstate = { adapter: PR.adapters.indexOf(D.chosen) >= 0 ? D.chosen : (PR.adapters[0] || null),
                 filter: "all", family: "", pairOnly: false, page: 0 };
  var view = "task";
  function pname(m) { return NAME[m] || m; }
  function probeHas(it, f) { return f === "all" || (it.flags[pstate.adapter] || []).indexOf(f) >= 0; }
  function inFamily(it) { return !pstate.family || it.family === pstate.family; }
  function probeVisible() {
    var out = [];
    PR.items.forEach(function (it, i) { if (inFamily(it) && probeHas(it, pstate.filter)) out.push(i); });
    return out;
  }
  function probeModels() {   // base, the compared adapter, then the other adapters
    var rest = PR.adapters.filter(function (m) { return m !== pstate.adapter; });
    var head = (hasBase ? ["base"] : []).concat(pstate.adapter ? [pstate.adapter] : []);
    return pstate.pairOnly ? head : head.concat(rest);
  }
  function probeColumn(it, m) {
    var o = it.outputs[m], col = el("div", "col");
    if (m === pstate.adapter) col.className += " adapter-sel";
    if (m === "base") col.className += " baseline-sel";
    col.dataset.model = m;
    var head = el("div", "head", pname(m));
    if (m === D.chosen) head.appendChild(el("small", null, " \u2605 chosen"));
    col.appendChild(head);
    if (!o) { col.appendChild(el("div", "empty", "no output for this probe")); return col; }
    var chips = el("div", "chips"), v = o.pass, c;
    if (o.error) c = el("span", "chip fail", "error");
    else if (v === null || v === undefined) c = el("span", "chip", "not scored");
    else c = el("span", "chip " + (v >= 1 ? "pass" : v <= 0 ? "fail" : ""), v >= 1 ? "pass" : v <= 0 ? "fail" : "pass " + fmt(v));
    if (o.note) c.title = o.note;
    c.className += " verdict";
    chips.appendChild(c);
    if (o.bleed === 1) {
      var b = el("span", "chip bleed", "format bleed");
      b.title = "answered in the fine-tuning task's output form although the probe did not ask for it";
      chips.appendChild(b);
    }
    col.appendChild(chips);
    if (o.error) col.appendChild(el("div", "error", "error: " + o.error));
    if (o.text) col.appendChild(el("pre", "out", o.text));
    else if (!o.error) col.appendChild(el("div", "empty", "(empty output)"));
    return col;
  }
  function probeCard(it) {
    var art = el("article", "item probe");
    art.dataset.key = it.key;
    art.dataset.id = it.id;
    var h = el("h3", null, it.id), f = it.flags[pstate.adapter] || [];
    h.appendChild(el("span", "badge", it.family));
    if (f.indexOf("regressed") >= 0) h.appendChild(el("span", "badge down", "regressed: base passes, " + pname(pstate.adapter) + " fails"));
    if (f.indexOf("improved") >= 0) h.appendChild(el("span", "badge up", "improved: base fails, " + pname(pstate.adapter) + " passes"));
    if (f.indexOf("bleed") >= 0) h.appendChild(el("span", "badge bleed", "format bleed"));
    art.appendChild(h);
    art.appendChild(el("div", "label", "prompt"));
    art.appendChild(el("pre", "block prompt", it.question));
    if (it.reference !== null) { art.appendChild(el("div", "label", "reference")); art.appendChild(el("pre", "block reference", it.reference)); }
    var models = probeModels(), grid = el("div", "grid");
    grid.style.gridTemplateColumns = "repeat(" + models.length + ", minmax(240px, 1fr))";
    models.forEach(function (m) { grid.appendChild(probeColumn(it, m)); });
    art.appendChild(grid);
    return art;
  }
  var PWHY = { all: "", regressed: "base passes, the adapter fails", bleed: "the adapter answered in the task's output form, unasked",
               improved: "base fails, the adapter passes" };
  function renderProbes() {
    PFILTERS.forEach(function (f) {
      var n = 0, btn = $("pf-" + f);
      PR.items.forEach(function (it) { if (inFamily(it) && probeHas(it, f)) n++; });
      btn.querySelector(".n").textContent = "(" + n + ")";
      btn.setAttribute("aria-pressed", String(pstate.filter === f));
    });
    $("pf-regressed").disabled = $("pf-improved").disabled = !hasBase;
    $("pf-bleed").disabled = !PR.bleed_measured;
    if (!PR.bleed_measured) $("pf-bleed").title = "format bleed not measured: the task's answers have no fixed form (task.yaml answer_pattern: names one)";
    $("p-family").value = pstate.family;
    $("p-adapter").value = pstate.adapter || "";
    var vis = probeVisible(), pages = Math.max(1, Math.ceil(vis.length / PAGE)), list = $("p-list");
    pstate.page = Math.min(pstate.page, pages - 1);
    list.textContent = "";
    vis.slice(pstate.page * PAGE, (pstate.page + 1) * PAGE).forEach(function (i) { list.appendChild(probeCard(PR.items[i])); });
    var total = PR.items.filter(inFamily).length;
    $("p-shown").textContent = "showing " + vis.length + " of " + total + " probes" + (pstate.family ? " in " + pstate.family : "") +
      (PWHY[pstate.filter] ? " \u00b7 " + PWHY[pstate.filter].replace("the adapter", pname(pstate.adapter)) : "") +
      (pstate.filter === "bleed" && !PR.bleed_measured ? " \u00b7 format bleed was not measured for this task" : "");
    $("p-page").textContent = "page " + (pstate.page + 1) + " of " + pages;
    $("p-prev").disabled = pstate.page === 0;
    $("p-next").disabled = pstate.page >= pages - 1;
    list.dataset.visible = String(vis.length);
    setHash("#probes" + (pstate.filter !== "all" ? "-" + pstate.filter : "") + (pstate.family ? "/" + encodeURIComponent(pstate.family) : ""));
  }
  function setHash(h) {   // keeps the address shareable; no history entry per click
    try { history.replaceState(null, "", h || location.pathname + location.search); } catch (e) { /* file: URLs may refuse */ }
  }
  function showView(v) {
    if (v === "probes" && state.mode === "label") leaveLabel();
    view = v;
    $("task-view").hidden = v !== "task";
    $("probes").hidden = v !== "probes";
    $("v-task").setAttribute("aria-pressed", String(v === "task"));
    $("v-probes").setAttribute("aria-pressed", String(v === "probes"));
    if (v === "probes") renderProbes(); else setHash("");
  }
  function fromHash() {   // #probes-bleed/arithmetic -> the probe view, that filter, that family
    var m = PHASH.exec(location.hash || "");
    if (!m || !PR.items.length) return;
    var fam = "";
    try { fam = m[2] ? decodeURIComponent(m[2]) : ""; } catch (e) { fam = ""; }
    pstate.filter = m[1] || "all";
    pstate.family = PR.families.indexOf(fam) >= 0 ? fam : "";
    pstate.page = 0;
    showView("probes");
  }
  if (PR.items.length) {
    $("views").hidden = false;
    $("v-task").querySelector(".n").textContent = "(" + D.items.length + ")";
    $("v-probes").querySelector(".n").textContent = "(" + PR.items.length + ")";
    PR.adapters.forEach(function (a) { var o = el("option", null, pname(a) + (a === D.chosen ? " (chosen)" : "")); o.value = a; $("p-adapter").appendChild(o); });
    var all = el("option", null, "all families (" + PR.items.length + ")"); all.value = ""; $("p-family").appendChild(all);
    PR.families.forEach(function (f) {
      var o = el("option", null, f + " (" + PR.items.filter(function (it) { return it.family === f; }).length + ")");
      o.value = f; $("p-family").appendChild(o);
    });
  }
  $("v-task").addEventListener("click", function () { showView("task"); });
  $("v-probes").addEventListener("click", function () { showView("probes"); });
  PFILTERS.forEach(function (f) {
    $("pf-" + f).addEventListener("click", function () { pstate.filter = f; pstate.page = 0; renderProbes(); });
  });
  $("p-family").addEventListener("change", function (e) { pstate.family = e.target.value; pstate.page = 0; renderProbes(); });
  $("p-adapter").addEventListener("change", function (e) { pstate.adapter = e.target.value; pstate.page = 0; renderProbes(); });
  $("p-pair-only").addEventListener("change", function (e) { pstate.pairOnly = e.target.checked; renderProbes(); });
  $("p-prev").addEventListener("click", function () { pstate.page--; renderProbes(); window.scrollTo(0, 0); });
  $("p-next").addEventListener("click", function () { pstate.page++; renderProbes(); window.scrollTo(0, 0); });
  window.addEventListener("hashchange", fromHash);

  // ------------------------------------------------------------------ wiring
  function fillSelect(sel, keys, value) {
    keys.forEach(function (k) { var o = el("option", null, NAME[k] + (k === D.chosen ? " (chosen)" : "")); o.value = k; sel.appendChild(o); });
    if (value) sel.value = value;
  }
  fillSelect($("adapter"), D.adapters, state.adapter);
  fillSelect($("baseline"), D.baselines, state.baseline);
  var nAd = D.adapters.length;
  $("summary").textContent = D.items.length + " items \u00b7 " + D.models.length + " models (" + D.baselines.map(function (b) { return NAME[b]; }).join(", ") +
    (nAd ? ", " + nAd + " adapter" + (nAd > 1 ? "s" : "") : "") + ")" + (D.primary ? " \u00b7 primary metric " + D.primary : "") +
    (D.chosen ? " \u00b7 chosen adapter " + NAME[D.chosen] : "") + (D.judge_ran ? " \u00b7 judge ran" : " \u00b7 no judge");
  $("adapter").addEventListener("change", function (e) { state.adapter = e.target.value; state.page = 0; refresh(); });
  $("baseline").addEventListener("change", function (e) { state.baseline = e.target.value; state.page = 0; refresh(); });
  Object.keys(state.filters).forEach(function (f) {
    $("f-" + f).addEventListener("click", function (e) {
      state.filters[f] = !state.filters[f];
      e.currentTarget.setAttribute("aria-pressed", String(state.filters[f]));
      state.page = 0; refresh();
    });
  });
  $("search").addEventListener("input", function (e) { state.search = e.target.value; state.page = 0; refresh(); });
  $("sort").addEventListener("change", function (e) { state.sort = e.target.value; state.page = 0; refresh(); });
  $("diff").addEventListener("change", function (e) { state.diff = e.target.value; if (state.mode === "browse") renderList(); });
  $("pair-only").addEventListener("change", function (e) { state.pairOnly = e.target.checked; if (state.mode === "browse") renderList(); });
  $("prev").addEventListener("click", function () { state.page--; renderList(); window.scrollTo(0, 0); });
  $("next").addEventListener("click", function () { state.page++; renderList(); window.scrollTo(0, 0); });
  $("label-mode").addEventListener("click", function () { if (state.mode === "label") leaveLabel(); else enterLabel(); });
  $("download").addEventListener("click", download);
  $("clear-labels").addEventListener("click", function () {
    if (window.confirm("Delete all " + nLabels() + " labels of this sweep from this browser?")) { store.labels = {}; saveLabels(); refresh(); }
  });
  document.addEventListener("keydown", function (e) {
    var t = e.target, tag = t && t.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { if (e.key === "Escape") t.blur(); return; }
    var handled = false;
    if (view === "probes") return;   // the keys belong to the task view (labelling, search)
    if (state.mode === "label") handled = labelKeyDown(e);
    else if (e.key === "/") { $("search").focus(); handled = true; }
    else if ((e.key === "l" || e.key === "L") && !e.ctrlKey && !e.metaKey) { enterLabel(); handled = true; }
    if (handled) e.preventDefault();
  });
  window.reviewLabelRows = labelRows;   // for tests and the console
  refresh();
  fromHash();
})();
