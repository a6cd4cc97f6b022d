// Sorting and filtering of the page's tables and charts; no library, so the page
// stays one file that opens offline. Each <div class="tablebox"> holds a filter
// bar and a table.sortable with one <tbody class="group"> per combination (or op);
// its rows carry data-status (measured rows; published rows none) and
// data-hardware, its cells data-v (the value to sort on). Filters act on groups,
// rows and, for the summary, every element with data-family, so one control
// narrows the table and the charts.
(function () {
  "use strict";
  var slice = function (list) { return Array.prototype.slice.call(list); };

  function setup(box) {
    var table = box.querySelector("table.sortable");
    var bar = box.querySelector(".filters");
    if (!table || !bar) { return; }
    var groups = slice(table.tBodies);
    var controls = slice(bar.querySelectorAll("[data-filter]"));
    var count = bar.querySelector("[data-count]");
    var noun = count ? count.getAttribute("data-noun") : "";

    function value(name) {
      var c = controls.filter(function (el) { return el.getAttribute("data-filter") === name; })[0];
      if (!c) { return ""; }
      return c.type === "checkbox" ? (c.checked ? "1" : "") : c.value.trim().toLowerCase();
    }

    function measured(group) {
      return slice(group.rows).filter(function (r) { return r.hasAttribute("data-status"); });
    }

    function attr(el, name) { return (el.getAttribute(name) || "").toLowerCase(); }

    function apply() {
      var status = value("status"), family = value("family"), precision = value("precision"),
          hardware = value("hardware"), text = value("text"), failing = value("failing"),
          shown = 0;
      groups.forEach(function (g) {
        slice(g.rows).forEach(function (r) {
          var hw = r.getAttribute("data-hardware");
          r.hidden = Boolean(hardware && hw !== null && hw.toLowerCase() !== hardware);
        });
        // Published rows (data-hardware, no data-status) keep a group shown too.
        var shownRows = slice(g.rows).filter(function (r) {
          return !r.hidden && (r.hasAttribute("data-status") || r.hasAttribute("data-hardware"));
        });
        var has = function (want) {
          return shownRows.some(function (r) { return want.indexOf(r.getAttribute("data-status")) >= 0; });
        };
        var ok = shownRows.length > 0 &&
          (!status || has([status])) && (!failing || has(["failed", "error"])) &&
          (!family || attr(g, "data-family") === family) &&
          (!precision || attr(g, "data-precision") === precision) &&
          (!text || attr(g, "data-text").indexOf(text) >= 0);
        g.hidden = !ok;
        shown += ok ? 1 : 0;
      });
      if (box.hasAttribute("data-charts")) {
        document.querySelectorAll("[data-family]:not(tbody)").forEach(function (el) {
          var other = family && attr(el, "data-family") !== family;
          el.style.display = other ? "none" : "";
        });
      }
      if (count) {
        count.textContent = shown + " of " + groups.length + " " + noun + " shown";
      }
    }

    // The key of a group for column `col`: from its first shown measured row that
    // has one, so that filtering to one hardware sorts by that hardware's figures.
    function key(group, col, numeric) {
      var rows = measured(group).filter(function (r) { return !r.hidden; });
      for (var i = 0; i < rows.length; i++) {
        var cell = rows[i].cells[col];
        if (!cell) { continue; }
        var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
        if (raw === "" || raw === "-") { continue; }
        if (!numeric) { return raw.toLowerCase(); }
        var n = parseFloat(raw);
        if (!isNaN(n)) { return n; }
      }
      return null;
    }

    var heads = slice(table.tHead.rows[table.tHead.rows.length - 1].cells);
    heads.forEach(function (th, col) {
      var kind = th.getAttribute("data-sort");
      if (!kind) { return; }
      th.tabIndex = 0;
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var keyed = groups.map(function (g, i) {
          return { g: g, k: key(g, col, kind === "num"), i: i };
        });
        keyed.sort(function (a, b) {
          // Missing values go last in either direction; ties keep the page's order.
          if (a.k === null || b.k === null) { return (a.k === null) - (b.k === null) || a.i - b.i; }
          var c = a.k < b.k ? -1 : a.k > b.k ? 1 : 0;
          return (asc ? c : -c) || a.i - b.i;
        });
        keyed.forEach(function (e) { table.appendChild(e.g); });
        groups = keyed.map(function (e) { return e.g; });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
    controls.forEach(function (el) {
      el.addEventListener(el.tagName === "INPUT" && el.type !== "checkbox" ? "input" : "change", apply);
    });
    apply();
  }

  // A link to a collapsed combination (the summary's names, the table of
  // contents) opens it and the section around it.
  function reveal() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    for (var el = target; el; el = el.parentElement) {
      if (el.tagName === "DETAILS") { el.open = true; }
    }
    if (target) { target.scrollIntoView(); }
  }

  slice(document.querySelectorAll(".tablebox")).forEach(setup);
  addEventListener("hashchange", reveal);
  reveal();
  document.documentElement.setAttribute("data-ready", "1");
})();
