// Filters of the suite page. Reads only data-* attributes the page itself wrote; writes only
// `hidden` flags and text content: no markup is ever built from data.
(function () {
  "use strict";
  var form = document.getElementById("filters");
  if (!form) { return; }
  var boxes = Array.prototype.slice.call(form.querySelectorAll("input[type=checkbox]"));
  var search = form.querySelector("input[type=search]");
  var count = document.getElementById("shown-count");

  function apply() {
    var shown = {};
    boxes.forEach(function (box) { shown[box.value] = box.checked; });
    var text = (search.value || "").toLowerCase();
    var visible = 0;
    document.querySelectorAll("tr.run-row").forEach(function (row) {
      var on = shown[row.dataset.status] === true &&
        row.dataset.case.toLowerCase().indexOf(text) !== -1;
      row.hidden = !on;
      if (on) { visible += 1; }
    });
    document.querySelectorAll("tr.grid-row").forEach(function (row) {
      var statuses = row.dataset.statuses.split(" ");
      var any = statuses.some(function (s) { return shown[s] === true; });
      row.hidden = !(any && row.dataset.case.toLowerCase().indexOf(text) !== -1);
    });
    if (count) { count.textContent = String(visible); }
  }

  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  apply();
}());
