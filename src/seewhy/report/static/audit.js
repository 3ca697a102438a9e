(function () {
  "use strict";
  // Every string from the data goes into the page through textContent or a
  // property, never through innerHTML, so a file called <script> stays text.
  var data = JSON.parse(document.getElementById("seewhy-data").textContent);
  var methods = data.methods;
  var all = data.items;
  var items = all.filter(function (it) { return it.status === "ok"; });
  var byIndex = new Map(all.map(function (it) { return [it.index, it]; }));
  var PAGE = 120;
  var shown = PAGE;
  var view = [];
  var current = -1;
  var $ = function (id) { return document.getElementById(id); };
  var grid = $("grid"), more = $("more"), dialog = $("viewer");

  function pad(n) { return String(n).padStart(7, "0"); }
  function pictureUrl(it) { return "images/" + pad(it.index) + ".jpg"; }
  function overlayUrl(it, j) { return "images/" + pad(it.index) + ".m" + j + ".jpg"; }
  function pct(x) { return x === null || x === undefined ? "" : (100 * x).toFixed(1) + "%"; }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function energy(it, j, which) {
    var e = it.energies[methods[j]];
    return e && e[which] !== null && e[which] !== undefined ? e[which] : null;
  }
  function byText(a, b) { return String(a || "").localeCompare(String(b || "")); }

  // Ground truth over the pictures: an SVG in the picture's own pixels (its
  // viewBox), stretched over the <img> and cut like it (slice = object-fit:
  // cover), so it lines up at any size. Only numbers and straight moves from
  // the data are drawn; a path with anything else is skipped.
  var SVG_NS = "http://www.w3.org/2000/svg";
  var PATH_OK = /^(?:M\d+(?:\.\d+)? \d+(?:\.\d+)?|[hv]\d+(?:\.\d+)?)*$/;
  function finite(v) { return typeof v === "number" && isFinite(v); }
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }
  function objectLayer(it) {
    var o = it.objects;
    if (!o || !Array.isArray(o.size) || o.size.length !== 2 || !o.size.every(finite)) {
      return null;
    }
    var layer = svg("svg", {
      "class": "objects",
      "viewBox": "0 0 " + o.size[0] + " " + o.size[1],
      "preserveAspectRatio": "xMidYMid slice",
      "aria-hidden": "true",
      "focusable": "false"
    });
    (Array.isArray(o.boxes) ? o.boxes : []).forEach(function (b) {
      if (!Array.isArray(b) || b.length !== 4 || !b.every(finite)) { return; }
      layer.appendChild(svg("rect", {
        "class": "gt-box", "x": b[0], "y": b[1], "width": b[2] - b[0], "height": b[3] - b[1]
      }));
    });
    if (typeof o.outline === "string" && o.outline && PATH_OK.test(o.outline)) {
      layer.appendChild(svg("path", { "class": "gt-mask", "d": o.outline }));
    }
    return layer.childNodes.length ? layer : null;
  }
  // The picture in a frame that the ground truth layer can cover exactly.
  function framed(img, it, cls) {
    var frame = el("div", "pic" + (cls ? " " + cls : ""));
    frame.appendChild(img);
    var layer = objectLayer(it);
    if (layer) { frame.appendChild(layer); }
    return frame;
  }

  var sorters = {
    "suspicion": function (a, b) { return b.suspicion - a.suspicion || a.index - b.index; },
    "confidence-desc": function (a, b) { return b.confidence - a.confidence || a.index - b.index; },
    "confidence-asc": function (a, b) { return a.confidence - b.confidence || a.index - b.index; },
    "object-asc": function (a, b) {
      var x = energy(a, 0, "object"), y = energy(b, 0, "object");
      return (x === null ? 2 : x) - (y === null ? 2 : y) || a.index - b.index;
    },
    "border-desc": function (a, b) {
      return (energy(b, 0, "border") || 0) - (energy(a, 0, "border") || 0) || a.index - b.index;
    },
    "name": function (a, b) { return byText(a.name, b.name) || a.index - b.index; },
    "true": function (a, b) { return byText(a.true_label, b.true_label) || a.index - b.index; },
    "pred": function (a, b) { return byText(a.pred_label, b.pred_label) || a.index - b.index; }
  };

  function fillSelect(select, values) {
    values.forEach(function (v) {
      var o = el("option", null, v);
      o.value = v;
      select.appendChild(o);
    });
  }
  function distinct(key) {
    var seen = new Set();
    items.forEach(function (it) { if (it[key] !== null) { seen.add(String(it[key])); } });
    return Array.from(seen).sort(byText);
  }
  fillSelect($("truth"), distinct("true_label"));
  fillSelect($("pred"), distinct("pred_label"));
  methods.forEach(function (m, j) {
    var o = el("option", null, m);
    o.value = String(j);
    $("method").appendChild(o);
  });

  function wanted() {
    var q = $("q").value.trim().toLowerCase();
    var truth = $("truth").value, pred = $("pred").value;
    var need = ["wrong", "off-object", "border", "odd"].filter(function (f) {
      return $("f-" + f).checked;
    });
    return function (it) {
      if (truth && String(it.true_label) !== truth) { return false; }
      if (pred && String(it.pred_label) !== pred) { return false; }
      for (var i = 0; i < need.length; i++) {
        if (it.flags.indexOf(need[i]) < 0) { return false; }
      }
      if (!q) { return true; }
      return [it.name, it.true_label, it.pred_label].some(function (s) {
        return s !== null && String(s).toLowerCase().indexOf(q) >= 0;
      });
    };
  }

  function card(it) {
    var j = Number($("method").value || 0);
    var node = el("article", "card" + (it.flags.indexOf("wrong") >= 0 ? " wrong" : ""));
    node.tabIndex = 0;
    node.setAttribute("role", "button");
    node.dataset.index = String(it.index);
    var img = el("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = "map over " + it.name;
    img.src = overlayUrl(it, j);
    node.appendChild(framed(img, it, "thumb"));
    var cap = el("div", "cap");
    cap.appendChild(el("div", "name", it.name)).title = it.name;
    cap.appendChild(el("div", "pred", it.pred_label + " " + pct(it.confidence)));
    if (it.true_label !== null) { cap.appendChild(el("div", "truth", "true: " + it.true_label)); }
    var badges = el("div", "badges");
    it.flags.forEach(function (f) { badges.appendChild(el("span", "badge " + f, f)); });
    cap.appendChild(badges);
    node.appendChild(cap);
    return node;
  }

  function render() {
    var frag = document.createDocumentFragment();
    view.slice(0, shown).forEach(function (it) { frag.appendChild(card(it)); });
    grid.replaceChildren(frag);
    more.hidden = shown >= view.length;
    $("count").textContent = "showing " + Math.min(shown, view.length) + " of " + view.length +
      " (" + items.length + " explained)";
    window.seewhyReport = { ready: true, rendered: Math.min(shown, view.length), matching: view.length };
  }

  function apply() {
    var keep = wanted();
    view = items.filter(keep).sort(sorters[$("sort").value] || sorters.suspicion);
    shown = PAGE;
    render();
  }

  function row(table, key, value) {
    var tr = el("tr");
    tr.appendChild(el("th", null, key));
    tr.appendChild(el("td", null, value));
    table.appendChild(tr);
  }

  function open(index) {
    var it = byIndex.get(index);
    if (!it || it.status !== "ok") { return; }
    current = index;
    $("v-title").textContent = it.name;
    var pics = $("v-images");
    pics.replaceChildren();
    var figs = [["input", pictureUrl(it)]].concat(methods.map(function (m, j) {
      return [m, overlayUrl(it, j)];
    }));
    figs.forEach(function (f) {
      var fig = el("figure");
      var img = el("img");
      img.alt = f[0] + " for " + it.name;
      img.src = f[1];
      fig.appendChild(framed(img, it, null));
      fig.appendChild(el("figcaption", null, f[0]));
      pics.appendChild(fig);
    });
    var t = $("v-details");
    t.replaceChildren();
    row(t, "file", it.path);
    row(t, "predicted", it.pred_label + " (" + pct(it.confidence) + ")");
    if (it.true_label !== null) {
      row(t, "true class", it.true_label +
        (it.true_probability !== null ? " (" + pct(it.true_probability) + ")" : ""));
    }
    row(t, "top classes", it.top.map(function (p) { return p[0] + " " + pct(p[2]); }).join(", "));
    methods.forEach(function (m, j) {
      var o = energy(it, j, "object"), b = energy(it, j, "border");
      row(t, m, (o === null ? "" : "on object " + pct(o) + ", ") + "on border " + pct(b));
    });
    row(t, "flags", it.flags.join(", ") || "none");
    if (it.notes.length) { row(t, "notes", it.notes.join(", ")); }
    row(t, "size", it.width + " x " + it.height + " px");
    row(t, "suspicion", String(it.suspicion));
    if (!dialog.open) { dialog.showModal(); }
  }

  function step(delta) {
    var pos = view.findIndex(function (it) { return it.index === current; });
    if (pos < 0) { return; }
    var next = view[pos + delta];
    if (next) { open(next.index); }
  }

  grid.addEventListener("click", function (e) {
    var node = e.target.closest(".card");
    if (node) { open(Number(node.dataset.index)); }
  });
  grid.addEventListener("keydown", function (e) {
    var node = e.target.closest(".card");
    if (node && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      open(Number(node.dataset.index));
    }
  });
  document.querySelectorAll("[data-open]").forEach(function (node) {
    node.addEventListener("click", function () { open(Number(node.getAttribute("data-open"))); });
    // the suspicious strip is written by the page's HTML: frame its pictures like the grid's
    var it = byIndex.get(Number(node.getAttribute("data-open")));
    var img = node.querySelector("img");
    if (it && img && objectLayer(it)) { node.insertBefore(framed(img, it, "thumb"), node.firstChild); }
  });
  more.addEventListener("click", function () { shown += PAGE; render(); });
  ["q", "sort", "truth", "pred", "method", "f-wrong", "f-off-object", "f-border", "f-odd"]
    .forEach(function (id) {
      $(id).addEventListener(id === "q" ? "input" : "change", apply);
    });
  if (items.some(function (it) {  // a cheap look: the layers are built per card
    var o = it.objects;
    return !!o && ((Array.isArray(o.boxes) && o.boxes.length > 0) || !!o.outline);
  })) {
    $("objects-toggle").hidden = false;
  }
  $("show-objects").addEventListener("change", function () {
    document.body.classList.toggle("no-objects", !$("show-objects").checked);
  });
  $("v-close").addEventListener("click", function () { dialog.close(); });
  $("v-prev").addEventListener("click", function () { step(-1); });
  $("v-next").addEventListener("click", function () { step(1); });
  dialog.addEventListener("click", function (e) {
    var r = dialog.getBoundingClientRect();
    var outside = e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom;
    if (e.target === dialog && outside) { dialog.close(); }
  });
  dialog.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft") { step(-1); }
    if (e.key === "ArrowRight") { step(1); }
  });
  apply();
}());
