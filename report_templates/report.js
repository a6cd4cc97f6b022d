// Sorting and filtering of the page's table and charts; no library, so the page
// stays one file that opens offline. The table holds one <tbody class="group">
// per combination; its rows carry data-hardware (measured rows data-status too,
// published rows none), its cells data-v (the value to sort on). Filters act on groups, rows and every
// element with data-family, so one control narrows the table and the charts.
(function () {
  "use strict";
  var table = document.querySelector("table.sortable");
  var bar = document.querySelector(".filters");
  if (!table || !bar) {
    document.documentElement.setAttribute("data-ready", "1");
    return;
  }
  var groups = Array.prototype.slice.call(table.tBodies);
  var controls = Array.prototype.slice.call(bar.querySelectorAll("[data-filter]"));
  var count = bar.querySelector("[data-count]");

  function value(name) {
    var c = controls.filter(function (el) { return el.getAttribute("data-filter") === name; })[0];
    return c ? c.value.trim().toLowerCase() : "";
  }

  function measured(group) {
    return Array.prototype.slice.call(group.rows).filter(function (r) {
      return r.hasAttribute("data-status");
    });
  }

  function apply() {
    var status = value("status"), family = value("family"), precision = value("precision"),
        hardware = value("hardware"), text = value("text"), shown = 0;
    groups.forEach(function (g) {
      Array.prototype.slice.call(g.rows).forEach(function (r) {
        var hw = r.getAttribute("data-hardware");
        r.hidden = Boolean(hardware && hw !== null && hw.toLowerCase() !== hardware);
      });
      var shownRows = Array.prototype.slice.call(g.rows).filter(function (r) {
        return r.hasAttribute("data-hardware") && !r.hidden;
      });
      var ok = shownRows.length > 0 &&
        (!status || shownRows.some(function (r) { return r.getAttribute("data-status") === status; })) &&
        (!family || g.getAttribute("data-family").toLowerCase() === family) &&
        (!precision || g.getAttribute("data-precision").toLowerCase() === precision) &&
        (!text || g.getAttribute("data-text").indexOf(text) >= 0);
      g.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    document.querySelectorAll("[data-family]:not(tbody)").forEach(function (el) {
      var other = family && el.getAttribute("data-family").toLowerCase() !== family;
      el.style.display = other ? "none" : "";
    });
    if (count) {
      count.textContent = shown + " of " + groups.length + " combinations shown";
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

  var heads = Array.prototype.slice.call(table.tHead.rows[table.tHead.rows.length - 1].cells);
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
    el.addEventListener(el.tagName === "INPUT" ? "input" : "change", apply);
  });
  apply();
  document.documentElement.setAttribute("data-ready", "1");
})();
