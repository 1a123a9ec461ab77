/* audit report widgets: interactive records tables and token heatmaps.
 * Data comes from script elements of type application/json (written with Jinja's |tojson) and is
 * put into the page with textContent / setAttribute only: a string from a model stays text. */
(function () {
  "use strict";
  var PAGE = 200;

  function readJSON(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "\u2014";
    if (typeof v === "number") {
      if (!isFinite(v)) return String(v);
      if (Number.isInteger(v)) return String(v);
      var a = Math.abs(v);
      if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
      return String(Number(v.toPrecision(4)));
    }
    if (typeof v === "boolean") return v ? "true" : "false";
    return String(v);
  }
  /* A column filter: ">0.5", "<= 3", "=1", "!=0" on numbers; otherwise a case-insensitive substring. */
  function makeFilter(text, numeric) {
    text = text.trim();
    if (!text) return null;
    var m = /^(<=|>=|!=|<|>|=)\s*(-?\d*\.?\d+(?:e[-+]?\d+)?)$/i.exec(text);
    if (numeric && m) {
      var x = parseFloat(m[2]), op = m[1];
      return function (v) {
        if (typeof v !== "number") return false;
        switch (op) {
          case "<": return v < x; case "<=": return v <= x; case ">": return v > x;
          case ">=": return v >= x; case "=": return v === x; default: return v !== x;
        }
      };
    }
    var needle = text.toLowerCase();
    return function (v) { return fmt(v).toLowerCase().indexOf(needle) >= 0; };
  }

  function RecordsTable(root, data) {
    var cols = data.columns, numeric = data.numeric, rows = data.rows.slice();
    var state = { query: "", filters: {}, sort: data.sort, desc: null, shown: PAGE };
    if (state.sort !== null && state.sort !== undefined) {
      // Worst first: ascending when higher is better, descending when lower is better.
      state.desc = data.higher_is_better === false;
    }
    var bar = el("div", "toolbar");
    var search = el("input");
    search.type = "search";
    search.placeholder = "Search all columns\u2026";
    search.setAttribute("aria-label", "search records");
    var count = el("span", "muted count");
    var more = el("button", null, "Show more");
    bar.appendChild(search); bar.appendChild(count); bar.appendChild(more);
    if (data.total > rows.length) bar.appendChild(el("span", "muted", "(first " + rows.length + " of " + data.total + " in this report)"));
    var scroll = el("div", "scroll"), table = el("table"), thead = el("thead"), tbody = el("tbody");
    var head = el("tr"), filt = el("tr", "filters");
    cols.forEach(function (c, i) {
      var th = el("th", numeric[i] ? "num" : null, c);
      th.title = "sort by " + c;
      th.addEventListener("click", function () {
        if (state.sort === c) state.desc = !state.desc; else { state.sort = c; state.desc = false; }
        render();
      });
      head.appendChild(th);
      var fth = el("th"), inp = el("input");
      inp.placeholder = numeric[i] ? "e.g. >0.5" : "filter";
      inp.setAttribute("aria-label", "filter " + c);
      inp.addEventListener("input", function () { state.filters[c] = makeFilter(inp.value, numeric[i]); state.shown = PAGE; render(); });
      fth.appendChild(inp);
      filt.appendChild(fth);
    });
    thead.appendChild(head); thead.appendChild(filt);
    table.appendChild(thead); table.appendChild(tbody); scroll.appendChild(table);
    root.appendChild(bar); root.appendChild(scroll);
    search.addEventListener("input", function () { state.query = search.value.toLowerCase(); state.shown = PAGE; render(); });
    more.addEventListener("click", function () { state.shown += PAGE; render(); });

    function visible() {
      var out = rows.filter(function (r) {
        for (var i = 0; i < cols.length; i++) {
          var f = state.filters[cols[i]];
          if (f && !f(r[i])) return false;
        }
        if (!state.query) return true;
        return r.some(function (v) { return fmt(v).toLowerCase().indexOf(state.query) >= 0; });
      });
      var si = cols.indexOf(state.sort);
      if (si >= 0) {
        out.sort(function (a, b) {
          var x = a[si], y = b[si], nx = x === null || x === undefined || (typeof x === "number" && isNaN(x)),
              ny = y === null || y === undefined || (typeof y === "number" && isNaN(y));
          if (nx || ny) return nx === ny ? 0 : (nx ? 1 : -1);  // missing values last, both ways
          var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
          return state.desc ? -c : c;
        });
      }
      return out;
    }
    function render() {
      var list = visible();
      while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
      list.slice(0, state.shown).forEach(function (r) {
        var tr = el("tr");
        r.forEach(function (v, i) {
          var td;
          var s = fmt(v);
          if (numeric[i]) td = el("td", "num", s);
          else if (s.length <= 40 && !/\s/.test(s)) td = el("td", "word", s);  // ids, labels: one line, never split
          else {
            td = el("td", "text");
            td.appendChild(el("div", null, s));
            td.addEventListener("click", function () { td.classList.toggle("open"); });
          }
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
      // A long text shows its first lines; say so where it is cut, so no answer looks shorter than it is.
      Array.prototype.forEach.call(tbody.querySelectorAll("td.text"), function (td) {
        var d = td.firstChild;
        if (d.scrollHeight > d.clientHeight + 2) { td.classList.add("clipped"); td.title = "click to show all / fold"; }
      });
      count.textContent = "showing " + Math.min(state.shown, list.length) + " of " + list.length + " rows";
      more.style.display = list.length > state.shown ? "" : "none";
      Array.prototype.forEach.call(head.children, function (th, i) {
        th.classList.remove("sorted-asc", "sorted-desc");
        if (cols[i] === state.sort) th.classList.add(state.desc ? "sorted-desc" : "sorted-asc");
      });
    }
    render();
  }

  /* Token heatmap: rows of {label, tokens: [str], scores: [number]}; red positive, blue negative. */
  function Heatmap(root, data) {
    var rowsData = data.rows || [];
    var max = data.max || 0;
    if (!max) rowsData.forEach(function (r) { (r.scores || []).forEach(function (s) { if (typeof s === "number" && isFinite(s)) max = Math.max(max, Math.abs(s)); }); });
    if (!max) max = 1;
    rowsData.forEach(function (r) {
      var row = el("div", "row");
      if (r.label !== undefined && r.label !== null) row.appendChild(el("span", "label", fmt(r.label)));
      (r.tokens || []).forEach(function (t, i) {
        var s = (r.scores || [])[i], span = el("span", "tok", String(t));
        if (typeof s === "number" && isFinite(s)) {
          var a = Math.min(1, Math.abs(s) / max) * 0.85;
          span.style.backgroundColor = s >= 0 ? "rgba(207,34,46," + a.toFixed(3) + ")" : "rgba(9,105,218," + a.toFixed(3) + ")";
          span.title = fmt(s);
        }
        row.appendChild(span);
      });
      root.appendChild(row);
    });
  }

  function mount(selector, attr, Widget) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), function (node) {
      try {
        Widget(node, readJSON(node.getAttribute(attr)));
      } catch (e) {
        node.appendChild(el("p", "note bad", "could not render this widget: " + e));
        console.error("audit report widget failed:", e);
      }
    });
  }
  mount("[data-records]", "data-records", RecordsTable);
  mount("[data-heatmap]", "data-heatmap", Heatmap);
  document.documentElement.setAttribute("data-report-ready", "1");
})();
