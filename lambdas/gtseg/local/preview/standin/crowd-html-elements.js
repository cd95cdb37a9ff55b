/*
 * gtseg's local stand-in for Ground Truth's crowd-html-elements.js (docs/preview.md).
 *
 * Defines the elements gtseg's worker template uses, so the page `gtseg preview` and
 * `gtseg simulate --human` serve works in a browser with nothing loaded from the network:
 *
 *   <crowd-form>                   the form wrapper: adds a Submit button when the template has
 *                                  none, fires a cancelable "submit" event, collects every named
 *                                  crowd element (and named native inputs) into the form output.
 *   <crowd-semantic-segmentation>  name, src, header, labels, initial-value attributes and the
 *                                  <full-instructions header> / <short-instructions> regions:
 *                                  brush, polygon, eraser, fill, undo/redo, zoom and pan,
 *                                  mask opacity, the prior mask of an adjustment task.
 *   <crowd-button>                 a styled button; form-action="submit" submits its crowd-form.
 *
 * The answer is the real element's (protocol doc §3.2): inputImageProperties, labelMappings of
 * the labels used, labeledImage.pngImageData (base64 PNG, no data: prefix: labelled pixels in the
 * label's colour, opaque; everything else transparent black) and, for an adjustment task only,
 * initialValueModified.
 *
 * The preview server configures the script with data- attributes on its own <script> tag:
 *   data-submit   URL the form output is POSTed to ({answerContent, timeSpentInSeconds})
 *   data-next     URL polled after a submission (simulate --human: the next task, or "done")
 *   data-mode     "preview" | "human"
 *   data-task     e.g. "Image 2 of 5"; data-prev / data-next-task: links to the neighbours
 * Without data-submit (the file opened on its own) the form output is shown instead.
 */
(function () {
  "use strict";

  if (window.customElements && customElements.get("crowd-semantic-segmentation")) return;

  const SCRIPT = document.currentScript;
  const BASE = SCRIPT && SCRIPT.src ? new URL(".", SCRIPT.src).href : "";
  const DATA = (SCRIPT && SCRIPT.dataset) || {};
  const CONFIG = {
    submit: DATA.submit || null,
    next: DATA.next || null,
    mode: DATA.mode || "file",
    task: DATA.task || "",
    prevTask: DATA.prev || null,
    nextTask: DATA.nextTask || null,
  };
  const CSS_URL = BASE + "standin.css"; // inside the elements' shadow roots
  const PAGE_CSS_URL = BASE + "page.css"; // the page around them: every selector is prefixed
  const ICONS_URL = BASE + "icons.svg";
  const OPENED_AT = Date.now();

  // ------------------------------------------------------------------ colours (gtseg.core.labels)

  // The order Ground Truth's worker UI has been seen to assign colours in (protocol doc §3.4):
  // d3 category10, then category20's lighter companions. Must equal GROUND_TRUTH_COLORS.
  const GROUND_TRUTH_COLORS = [
    "#2ca02c", "#1f77b4", "#ff7f0e", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#ff9896", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
  ];
  const BACKGROUND_COLOR = "#ffffff";

  function roundHalfEven(value) {
    // Python's round(): ties go to the even neighbour.
    const floor = Math.floor(value);
    const diff = value - floor;
    if (diff > 0.5) return floor + 1;
    if (diff < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  function pyMod1(value) {
    const m = value % 1.0;
    return m < 0 ? m + 1.0 : m;
  }

  function hlsToRgb(h, l, s) {
    // colorsys.hls_to_rgb
    if (s === 0) return [l, l, l];
    const m2 = l <= 0.5 ? l * (1.0 + s) : l + s - l * s;
    const m1 = 2.0 * l - m2;
    const v = (hue) => {
      hue = pyMod1(hue);
      if (hue < 1.0 / 6.0) return m1 + (m2 - m1) * hue * 6.0;
      if (hue < 0.5) return m2;
      if (hue < 2.0 / 3.0) return m1 + (m2 - m1) * (2.0 / 3.0 - hue) * 6.0;
      return m1;
    };
    return [v(h + 1.0 / 3.0), v(h), v(h - 1.0 / 3.0)];
  }

  function rgbToHex(rgb) {
    return "#" + rgb.map((c) => c.toString(16).padStart(2, "0")).join("");
  }

  function normalizeHex(color) {
    const match = /^#?([0-9a-fA-F]{6})$/.exec(String(color == null ? "" : color).trim());
    return match ? "#" + match[1].toLowerCase() : null;
  }

  function hexToRgb(hex) {
    const value = parseInt(normalizeHex(hex).slice(1), 16);
    return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
  }

  /** gtseg.core.labels.default_colors */
  function defaultColors(count) {
    const colors = GROUND_TRUTH_COLORS.slice(0, count);
    const used = new Set([BACKGROUND_COLOR, ...colors]);
    let step = 0;
    while (colors.length < count) {
      step += 1;
      const hue = pyMod1(step * 0.618033988749895);
      const light = step % 2 ? 0.45 : 0.65;
      const hex = rgbToHex(hlsToRgb(hue, light, 0.75).map((c) => roundHalfEven(c * 255)));
      if (!used.has(hex)) {
        used.add(hex);
        colors.push(hex);
      }
    }
    return colors;
  }

  /** gtseg.core.labels.ClassMap.from_labels(labels, colors): the colour of each label. */
  function labelColors(labels, wanted) {
    const chosen = new Map();
    const used = new Set([BACKGROUND_COLOR]);
    for (const name of labels) {
      const entry = wanted && Object.prototype.hasOwnProperty.call(wanted, name) ? wanted[name] : null;
      const raw = entry && typeof entry === "object" ? entry.color : entry;
      const hex = raw == null ? null : normalizeHex(raw);
      if (hex && !used.has(hex)) {
        chosen.set(name, hex);
        used.add(hex);
      }
    }
    const spare = defaultColors(labels.length + used.size).filter((c) => !used.has(c));
    let next = 0;
    return labels.map((name) => chosen.get(name) || spare[next++]);
  }

  // ------------------------------------------------------------------ attribute parsing

  /** JSON, or the JavaScript-ish literal AWS's own examples use (single quotes, trailing commas). */
  function parseLoose(text) {
    try {
      return { value: JSON.parse(text), strict: true };
    } catch (_error) {
      const quoted = String(text)
        .replace(/'((?:[^'\\]|\\.)*)'/g, (_m, body) => JSON.stringify(body.replace(/\\'/g, "'")))
        .replace(/,\s*([}\]])/g, "$1");
      return { value: JSON.parse(quoted), strict: false };
    }
  }

  function whenParsed(callback) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", callback, { once: true });
    } else {
      queueMicrotask(callback);
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child == null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function icon(name) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const use = document.createElementNS(NS, "use");
    use.setAttribute("href", ICONS_URL + "#" + name);
    svg.append(use);
    return svg;
  }

  function stylesheet() {
    return el("link", { rel: "stylesheet", href: CSS_URL });
  }

  function formatCount(n) {
    return Number(n).toLocaleString("en-US");
  }

  function isEditable(target) {
    if (!target || !(target instanceof Element)) return false;
    const tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  // Page-level look: the tool fills the window, as in the worker portal.
  function preparePage() {
    document.documentElement.classList.add("gtseg-standin-page");
    if (!document.head.querySelector("link[data-gtseg-standin]")) {
      const link = el("link", { rel: "stylesheet", href: PAGE_CSS_URL });
      link.dataset.gtsegStandin = "";
      document.head.append(link);
    }
    if (preparePage.done) return;
    preparePage.done = true;
    // The server's first inline script records what the Content-Security-Policy blocked before
    // this script ran (a template's CDN links); later blocks arrive as events.
    if (!Array.isArray(window.__gtsegBlocked)) {
      window.__gtsegBlocked = [];
      document.addEventListener("securitypolicyviolation", (event) => window.__gtsegBlocked.push(event.blockedURI || "a resource"));
    }
    document.addEventListener("securitypolicyviolation", (event) => {
      const blocked = event.blockedURI || "a resource";
      for (const tool of document.querySelectorAll("crowd-semantic-segmentation")) {
        if (tool._ready) tool._notice(`Blocked ${blocked}: the preview loads nothing from the network.`, "warn");
      }
    });
  }

  function blockedSoFar() {
    const seen = Array.from(new Set(window.__gtsegBlocked || []));
    if (!seen.length) return null;
    const shown = seen.slice(0, 2).join(", ") + (seen.length > 2 ? ` and ${seen.length - 2} more` : "");
    seen.forEach((url) => console.warn(`gtseg preview: blocked ${url} (the preview loads nothing from the network)`));
    return `Blocked ${shown}: the preview loads nothing from the network.`;
  }

  // ------------------------------------------------------------------ undo records

  class Recorder {
    constructor() {
      this.size = 0;
      this.idx = new Uint32Array(1024);
      this.before = new Uint8Array(1024);
      this.after = new Uint8Array(1024);
      this.x0 = Infinity;
      this.y0 = Infinity;
      this.x1 = -Infinity;
      this.y1 = -Infinity;
    }
    push(i, before, after, x, y) {
      if (this.size === this.idx.length) {
        const grow = (arr) => {
          const bigger = new arr.constructor(arr.length * 2);
          bigger.set(arr);
          return bigger;
        };
        this.idx = grow(this.idx);
        this.before = grow(this.before);
        this.after = grow(this.after);
      }
      this.idx[this.size] = i;
      this.before[this.size] = before;
      this.after[this.size] = after;
      this.size += 1;
      if (x < this.x0) this.x0 = x;
      if (x > this.x1) this.x1 = x;
      if (y < this.y0) this.y0 = y;
      if (y > this.y1) this.y1 = y;
    }
    finish(what) {
      return {
        what,
        idx: this.idx.slice(0, this.size),
        before: this.before.slice(0, this.size),
        after: this.after.slice(0, this.size),
        rect: [this.x0, this.y0, this.x1, this.y1],
      };
    }
  }

  const MAX_HISTORY = 200;
  const TOOLS = [
    { id: "brush", name: "Brush", key: "B", icon: "brush", hint: "Paint with the chosen label" },
    { id: "polygon", name: "Polygon", key: "P", icon: "polygon", hint: "Click the corners; click the first one, double-click or press Enter to fill" },
    { id: "eraser", name: "Eraser", key: "E", icon: "eraser", hint: "Remove paint" },
    { id: "fill", name: "Fill", key: "F", icon: "fill", hint: "Fill the connected area under the pointer with the chosen label" },
    { id: "move", name: "Move", key: "M", icon: "move", hint: "Drag to pan (or hold Space with any tool)" },
  ];
  const BRUSH_PRESETS = [4, 12, 32, 64];

  // ------------------------------------------------------------------ <crowd-semantic-segmentation>

  class CrowdSemanticSegmentation extends HTMLElement {
    static get observedAttributes() {
      return ["src", "header", "labels", "initial-value"];
    }

    constructor() {
      super();
      this._ready = false;
      this._labelsOverride = null;
      this._submitButton = null;
    }

    connectedCallback() {
      if (this._started) return;
      this._started = true;
      whenParsed(() => this._setup());
    }

    attributeChangedCallback(name, oldValue, newValue) {
      if (!this._ready || oldValue === newValue) return;
      if (name === "header") this._renderHeader();
      else if (name === "labels") this._applyLabels();
      else this._load();
    }

    /** Labels can also be set from JavaScript, as AWS's "custom labels" sample does. */
    get labels() {
      return this._labels ? this._labels.slice() : this._readLabels().labels;
    }

    set labels(value) {
      this._labelsOverride = Array.from(value || [], String);
      if (this._ready) this._applyLabels();
    }

    /** The element's answer, as it goes into the crowd-form output. */
    get value() {
      return this._answer();
    }

    // -------------------------------------------------------------- build

    _setup() {
      if (this._ready) return;
      preparePage();
      const root = this.attachShadow({ mode: "open" });
      this._root = root;
      for (const child of Array.from(this.children)) {
        const tag = child.tagName.toLowerCase();
        if (tag === "full-instructions") child.slot = "full-instructions";
        else if (tag === "short-instructions") child.slot = "short-instructions";
      }
      const full = this.querySelector(":scope > full-instructions");
      this._fullTitle = (full && full.getAttribute("header")) || "Instructions";

      this._toolButtons = new Map();
      const toolbar = el("div", { class: "toolbar", role: "toolbar", "aria-label": "Tools", "aria-orientation": "vertical" });
      for (const tool of TOOLS) {
        const button = el(
          "button",
          { type: "button", class: "tool", "aria-pressed": "false", title: `${tool.name} (${tool.key}) - ${tool.hint}`, "aria-keyshortcuts": tool.key, onclick: () => this._setTool(tool.id) },
          icon(tool.icon),
          el("span", { class: "tool-name" }, tool.name)
        );
        this._toolButtons.set(tool.id, button);
        toolbar.append(button);
      }
      toolbar.append(el("div", { class: "sep", role: "separator" }));
      this._undoButton = el("button", { type: "button", class: "tool", title: "Undo (Ctrl+Z)", "aria-keyshortcuts": "Control+Z", onclick: () => this._undo(), disabled: true }, icon("undo"), el("span", { class: "tool-name" }, "Undo"));
      this._redoButton = el("button", { type: "button", class: "tool", title: "Redo (Ctrl+Shift+Z)", "aria-keyshortcuts": "Control+Shift+Z", onclick: () => this._redo(), disabled: true }, icon("redo"), el("span", { class: "tool-name" }, "Redo"));
      toolbar.append(this._undoButton, this._redoButton);
      toolbar.append(el("div", { class: "sep", role: "separator" }));
      toolbar.append(
        el("button", { type: "button", class: "tool", title: "Zoom in (+)", "aria-keyshortcuts": "+", onclick: () => this._zoomCentre(1.25) }, icon("zoom-in"), el("span", { class: "tool-name" }, "Zoom in")),
        el("button", { type: "button", class: "tool", title: "Zoom out (-)", "aria-keyshortcuts": "-", onclick: () => this._zoomCentre(0.8) }, icon("zoom-out"), el("span", { class: "tool-name" }, "Zoom out")),
        el("button", { type: "button", class: "tool", title: "Fit the image to the window (0)", "aria-keyshortcuts": "0", onclick: () => this._fitAgain() }, icon("fit"), el("span", { class: "tool-name" }, "Fit image"))
      );
      this._resetButton = el("button", { type: "button", class: "tool", title: "Start over: back to the starting mask (undoable)", onclick: () => this._reset() }, icon("reset"), el("span", { class: "tool-name" }, "Reset"));
      toolbar.append(el("div", { class: "sep", role: "separator" }), this._resetButton);

      this._image = el("img", { class: "image", alt: "", draggable: "false" });
      this._maskCanvas = el("canvas", { class: "mask", "aria-hidden": "true" });
      this._stage = el("div", { class: "stage" }, this._image, this._maskCanvas);
      this._cursor = el("canvas", { class: "cursor-layer", "aria-hidden": "true" });
      this._message = el("div", { class: "viewport-message", role: "status" }, "Loading the image…");
      this._viewport = el(
        "div",
        { class: "viewport", tabindex: "0", role: "application", "aria-label": "Image to segment", "aria-roledescription": "painting canvas" },
        this._stage,
        this._cursor,
        this._message
      );

      this._labelList = el("div", { class: "label-list", role: "group", "aria-label": "Labels" });
      this._labelFilter = el("input", { class: "label-filter", type: "search", placeholder: "Find a label", "aria-label": "Find a label", hidden: true, oninput: () => this._filterLabels() });

      this._sizeInput = el("input", { type: "range", min: "1", max: "200", value: "12", "aria-label": "Brush size", oninput: () => this._setBrushSize(Number(this._sizeInput.value)) });
      this._sizeValue = el("output", { class: "value" }, "12 px");
      this._presetButtons = BRUSH_PRESETS.map((size) =>
        el("button", { type: "button", class: "preset", title: `${size} px brush`, "aria-label": `Size ${size} px`, onclick: () => this._setBrushSize(size) }, el("span", { class: "dot", style: `--d:${Math.max(3, Math.round(Math.sqrt(size) * 2.6))}px` }))
      );
      this._opacityInput = el("input", { type: "range", min: "0", max: "100", value: "60", "aria-label": "Mask opacity", oninput: () => this._setOpacity(Number(this._opacityInput.value) / 100) });
      this._opacityValue = el("output", { class: "value" }, "60%");
      this._hideButton = el("button", { type: "button", class: "icon-button eye", "aria-label": "Hide mask", "aria-pressed": "false", title: "Hide the mask (H)", onclick: () => this._toggleMask() }, icon("eye"));

      this._headerText = el("h1", { class: "task-header" });
      this._taskChip = this._taskNavigation();
      this._submitSlot = el("div", { class: "submit-slot" });
      const topbar = el(
        "header",
        { class: "topbar" },
        el("div", { class: "brand", title: "gtseg's local stand-in for Ground Truth's worker UI" }, icon("layers"), el("span", {}, "Preview")),
        this._headerText,
        el(
          "div",
          { class: "top-actions" },
          this._taskChip,
          el("button", { type: "button", class: "ghost", onclick: () => this._openDialog(this._fullDialog) }, icon("book"), "Instructions"),
          el("button", { type: "button", class: "ghost", onclick: () => this._openDialog(this._keysDialog) }, icon("keyboard"), "Shortcuts"),
          this._submitSlot
        )
      );

      const panel = el(
        "aside",
        { class: "panel" },
        el("section", { class: "card labels-card" }, el("h2", {}, "Labels"), this._labelFilter, this._labelList),
        el(
          "section",
          { class: "card" },
          el("h2", {}, "Brush size", this._sizeValue),
          this._sizeInput,
          el("div", { class: "presets" }, this._presetButtons)
        ),
        el(
          "section",
          { class: "card" },
          el("h2", {}, "Mask opacity", el("span", { class: "h2-tail" }, this._opacityValue, this._hideButton)),
          this._opacityInput
        ),
        el(
          "section",
          { class: "card instructions-card" },
          el("h2", {}, "Instructions"),
          el("div", { class: "short-instructions" }, el("slot", { name: "short-instructions" })),
          el("button", { type: "button", class: "link", onclick: () => this._openDialog(this._fullDialog) }, "View full instructions")
        )
      );

      this._statusSize = el("span", {}, "");
      this._statusZoom = el("span", {}, "");
      this._statusPointer = el("span", { class: "pointer" }, "");
      this._statusPrior = el("span", { class: "prior" }, "");
      this._notices = el("div", { class: "notices", role: "status", "aria-live": "polite" });
      const status = el("footer", { class: "statusbar" }, this._statusSize, this._statusZoom, this._statusPointer, this._statusPrior);

      this._fullDialog = el(
        "dialog",
        { class: "dialog", "aria-label": this._fullTitle },
        el("div", { class: "dialog-head" }, el("h2", {}, this._fullTitle), this._closeButton()),
        el("div", { class: "dialog-body full-instructions" }, el("slot", { name: "full-instructions" }))
      );
      this._keysDialog = el(
        "dialog",
        { class: "dialog keys", "aria-label": "Keyboard shortcuts" },
        el("div", { class: "dialog-head" }, el("h2", {}, "Keyboard shortcuts"), this._closeButton()),
        el(
          "div",
          { class: "dialog-body" },
          el(
            "table",
            {},
            [
              [["B", "P", "E", "F", "M"], "Brush, polygon, eraser, fill, move"],
              [["1", "…", "9"], "Choose a label"],
              [["[", "]"], "Smaller / larger brush"],
              [["Wheel", "+", "-"], "Zoom in and out (the wheel zooms at the pointer)"],
              [["Space+drag", "Middle button"], "Pan"],
              [["0"], "Fit the image to the window"],
              [["Ctrl+Z", "Ctrl+Shift+Z"], "Undo / redo"],
              [["H"], "Hide or show the mask"],
              [["Enter", "Esc", "Backspace"], "Polygon: close, cancel, drop the last corner"],
              [["?"], "This list"],
            ].map(([keys, what]) => el("tr", {}, el("th", {}, keys.map((k) => el("kbd", {}, k))), el("td", {}, what)))
          )
        )
      );

      root.append(
        stylesheet(),
        el("div", { class: "app" }, topbar, el("div", { class: "body" }, toolbar, this._viewport, panel), status),
        this._notices,
        this._fullDialog,
        this._keysDialog
      );

      this._tool = "brush";
      this._brushSize = 12;
      this._opacity = 0.6;
      this._hidden = false;
      this._view = { scale: 1, tx: 0, ty: 0 };
      this._undoStack = [];
      this._redoStack = [];
      this._polygon = [];
      this._pointer = null;
      this._ready = true;
      this._bindEvents();
      this._renderHeader();
      this._applyLabels();
      this._setTool("brush");
      this._setOpacity(this._opacity);
      if (this._submitButton) this._submitSlot.append(this._submitButton);
      const blocked = blockedSoFar();
      if (blocked) this._notice(blocked, "warn");
      this._load();
    }

    _closeButton() {
      return el("button", { type: "button", class: "icon-button", "aria-label": "Close", onclick: (e) => e.target.closest("dialog").close() }, icon("close"));
    }

    _taskNavigation() {
      if (!CONFIG.task) return null;
      const link = (href, label, name) =>
        href
          ? el("a", { class: "nav", href, "aria-label": label, title: label }, icon(name))
          : el("span", { class: "nav disabled", "aria-hidden": "true" }, icon(name));
      return el(
        "div",
        { class: "task-chip" },
        CONFIG.mode === "preview" ? link(CONFIG.prevTask, "Previous image", "chevron-left") : null,
        el("span", {}, CONFIG.task),
        CONFIG.mode === "preview" ? link(CONFIG.nextTask, "Next image", "chevron-right") : null
      );
    }

    /** crowd-form's Submit button goes into the tool's top bar, where workers look for it. */
    _placeSubmit(button) {
      this._submitButton = button;
      if (this._ready) this._submitSlot.append(button);
    }

    _renderHeader() {
      const header = this.getAttribute("header");
      this._headerText.textContent = header || "";
      this._headerText.title = header || "";
    }

    // -------------------------------------------------------------- labels

    _readLabels() {
      if (this._labelsOverride) return { labels: this._labelsOverride, problem: null };
      const raw = this.getAttribute("labels");
      if (raw == null || !raw.trim()) return { labels: [], problem: "The element has no labels attribute." };
      try {
        const parsed = parseLoose(raw);
        if (!Array.isArray(parsed.value)) return { labels: [], problem: "The labels attribute is not a JSON list." };
        const labels = parsed.value.map((item) => (item && typeof item === "object" ? item.label : item)).filter((x) => x != null).map(String);
        return { labels, problem: parsed.strict ? null : "The labels attribute is not strict JSON; it was read leniently." };
      } catch (error) {
        return { labels: [], problem: `The labels attribute is not JSON: ${error.message}` };
      }
    }

    _readInitialValue() {
      const raw = this.getAttribute("initial-value");
      if (raw == null) return null;
      try {
        const parsed = parseLoose(raw).value;
        if (!parsed || typeof parsed !== "object") throw new Error("not an object");
        return { mappings: parsed.labelMappings && typeof parsed.labelMappings === "object" ? parsed.labelMappings : {}, src: parsed.src };
      } catch (error) {
        return { mappings: {}, src: null, problem: `initial-value is not JSON: ${error.message}` };
      }
    }

    _applyLabels() {
      const { labels, problem } = this._readLabels();
      const initial = this._readInitialValue();
      const unique = Array.from(new Set(labels));
      this._labels = unique;
      this._colors = labelColors(unique, initial ? initial.mappings : null);
      // class index k (1..N) = label k-1; 0 = unlabelled
      this._lut = new Uint8ClampedArray(256 * 4);
      this._colors.forEach((hex, i) => {
        const [r, g, b] = hexToRgb(hex);
        this._lut.set([r, g, b, 255], (i + 1) * 4);
      });
      this._labelButtons = unique.map((name, i) => {
        const button = el(
          "button",
          { type: "button", class: "label", "aria-pressed": "false", title: i < 9 ? `${name} (${i + 1})` : name, onclick: () => this._setLabel(i + 1) },
          el("span", { class: "swatch", style: `--c:${this._colors[i]}`, "aria-hidden": "true" }),
          el("span", { class: "label-name" }, name),
          el("span", { class: "area", "aria-hidden": "true" }),
          i < 9 ? el("kbd", { "aria-hidden": "true" }, String(i + 1)) : null
        );
        button.dataset.label = name;
        return button;
      });
      this._labelList.replaceChildren(...this._labelButtons);
      this._labelFilter.hidden = unique.length <= 8;
      if (!unique.length) this._labelList.append(el("p", { class: "empty" }, "No labels to choose from."));
      if (problem) this._notice(problem, unique.length ? "warn" : "error");
      if (unique.length !== labels.length) this._notice("The labels attribute repeats a label; it is offered once.", "warn");
      this._setLabel(this._label && this._label <= unique.length ? this._label : unique.length ? 1 : 0);
      if (this._buf) this._repaintAll();
    }

    _filterLabels() {
      const needle = this._labelFilter.value.trim().toLowerCase();
      for (const button of this._labelButtons) button.hidden = Boolean(needle) && !button.dataset.label.toLowerCase().includes(needle);
    }

    _setLabel(index) {
      this._label = index;
      (this._labelButtons || []).forEach((button, i) => {
        button.setAttribute("aria-pressed", String(i + 1 === index));
        button.classList.toggle("active", i + 1 === index);
      });
      if (index && (this._tool === "eraser" || this._tool === "move")) this._setTool("brush");
      this._drawCursor();
    }

    _updateAreas() {
      if (!this._buf || !this._labelButtons) return;
      const total = this._W * this._H;
      this._labelButtons.forEach((button, i) => {
        const count = this._counts[i + 1];
        const area = button.querySelector(".area");
        area.textContent = count ? (count * 100 / total < 0.1 ? "<0.1%" : (count * 100 / total).toFixed(1) + "%") : "";
        button.classList.toggle("used", count > 0);
      });
    }

    // -------------------------------------------------------------- tools and settings

    _setTool(id) {
      if (this._tool === "polygon" && id !== "polygon") this._polygon = [];
      this._tool = id;
      for (const [key, button] of this._toolButtons) {
        button.setAttribute("aria-pressed", String(key === id));
        button.classList.toggle("active", key === id);
      }
      this._viewport.dataset.tool = id;
      this._drawCursor();
    }

    _setBrushSize(size) {
      size = Math.max(1, Math.min(200, Math.round(size)));
      this._brushSize = size;
      this._sizeInput.value = String(size);
      this._sizeValue.textContent = `${size} px`;
      this._presetButtons.forEach((b, i) => b.classList.toggle("active", BRUSH_PRESETS[i] === size));
      this._drawCursor();
    }

    _setOpacity(value) {
      this._opacity = Math.max(0, Math.min(1, value));
      this._hidden = false;
      this._hideButton.setAttribute("aria-pressed", "false");
      this._opacityInput.value = String(Math.round(this._opacity * 100));
      this._opacityValue.textContent = `${Math.round(this._opacity * 100)}%`;
      this._maskCanvas.style.opacity = String(this._opacity);
    }

    _toggleMask() {
      this._hidden = !this._hidden;
      this._maskCanvas.style.opacity = this._hidden ? "0" : String(this._opacity);
      this._hideButton.setAttribute("aria-pressed", String(this._hidden));
      this._notice(this._hidden ? "Mask hidden (H shows it again)" : "Mask shown", "info", 1200);
    }

    _notice(text, kind = "info", ms = 0) {
      if (!this._notices) return;
      const item = el("div", { class: `notice ${kind}` }, icon(kind === "info" ? "check" : "alert"), el("span", {}, text));
      if (!ms) item.append(el("button", { type: "button", class: "icon-button", "aria-label": "Dismiss", onclick: () => item.remove() }, icon("close")));
      this._notices.append(item);
      if (ms) setTimeout(() => item.remove(), ms);
    }

    _openDialog(dialog) {
      if (!dialog.open) dialog.showModal();
    }

    // -------------------------------------------------------------- loading

    _load() {
      const src = this.getAttribute("src");
      this._loadToken = (this._loadToken || 0) + 1;
      const token = this._loadToken;
      this._buf = null;
      this._message.hidden = false;
      this._message.textContent = "Loading the image…";
      this._message.classList.remove("error");
      if (!src) {
        this._fail("This task has no image: the src attribute is empty.");
        return;
      }
      const load = (cors) =>
        new Promise((resolve, reject) => {
          const img = new Image();
          if (cors) img.crossOrigin = "anonymous";
          img.onload = () => resolve(img);
          img.onerror = () => reject(new Error("failed"));
          img.src = src;
        });
      load(true)
        .catch(() =>
          load(false).then((img) => {
            this._notice("The image's server sent no CORS header: Ground Truth's worker UI needs one (protocol doc §9.3).", "warn");
            return img;
          })
        )
        .then(
          (img) => {
            if (token !== this._loadToken) return;
            this._image.src = img.src;
            if (img.crossOrigin) this._image.crossOrigin = img.crossOrigin;
            this._start(img.naturalWidth, img.naturalHeight);
          },
          () => {
            if (token === this._loadToken) this._fail(`The image did not load: ${src.slice(0, 200)}`);
          }
        );
    }

    _fail(text) {
      this._message.hidden = false;
      this._message.classList.add("error");
      this._message.textContent = text;
    }

    _start(width, height) {
      this._W = width;
      this._H = height;
      this._buf = new Uint8Array(width * height);
      this._counts = new Float64Array(256);
      this._counts[0] = width * height;
      this._maskCanvas.width = width;
      this._maskCanvas.height = height;
      this._image.width = width;
      this._image.height = height;
      this._maskCtx = this._maskCanvas.getContext("2d");
      this._maskData = this._maskCtx.createImageData(width, height);
      this._initial = null;
      this._undoStack = [];
      this._redoStack = [];
      this._updateHistoryButtons();
      this._setBrushSize(Math.max(2, Math.min(64, Math.round(Math.min(width, height) / 40))));
      this._statusSize.textContent = `${width} × ${height} px`;
      this._message.hidden = true;
      this._fit();
      const initial = this._readInitialValue();
      if (initial) {
        this._hasInitial = true;
        if (initial.problem) this._notice(initial.problem, "error");
        this._statusPrior.textContent = "Starting mask: loading…";
        this._loadPrior(initial).finally(() => this._updateAreas());
      } else {
        this._hasInitial = false;
        this._initial = new Uint8Array(width * height);
        this._statusPrior.textContent = "";
        this._updateAreas();
      }
      this.dispatchEvent(new CustomEvent("gtseg-ready", { bubbles: true, composed: true }));
    }

    _loadPrior(initial) {
      const done = (text, kind) => {
        this._initial = this._buf.slice();
        this._statusPrior.textContent = text;
        this._statusPrior.dataset.state = kind;
        this.dataset.prior = kind;
        this.dispatchEvent(new CustomEvent("gtseg-prior", { bubbles: true, composed: true, detail: { state: kind } }));
      };
      if (!initial.src) {
        done("Starting mask: none (initial-value has no src)", "error");
        return Promise.resolve();
      }
      return new Promise((resolve) => {
        const img = new Image();
        img.crossOrigin = "anonymous";
        img.onload = () => {
          try {
            const canvas = document.createElement("canvas");
            canvas.width = this._W;
            canvas.height = this._H;
            const ctx = canvas.getContext("2d", { willReadFrequently: true });
            ctx.imageSmoothingEnabled = false;
            ctx.drawImage(img, 0, 0, this._W, this._H);
            const pixels = ctx.getImageData(0, 0, this._W, this._H).data;
            const byColor = new Map();
            this._labels.forEach((name, i) => byColor.set(hexToRgb(this._colors[i]).join(","), i + 1));
            // The prior's own mappings decide its colours; a label it names maps by name.
            for (const [name, entry] of Object.entries(initial.mappings || {})) {
              const hex = normalizeHex(entry && typeof entry === "object" ? entry.color : entry);
              const k = this._labels.indexOf(name);
              if (hex && k >= 0) byColor.set(hexToRgb(hex).join(","), k + 1);
            }
            let unmatched = 0;
            const rec = new Recorder();
            for (let i = 0, p = 0; i < this._buf.length; i += 1, p += 4) {
              if (pixels[p + 3] < 128) continue;
              const key = pixels[p] + "," + pixels[p + 1] + "," + pixels[p + 2];
              const k = byColor.get(key);
              if (k) this._set(i, k, rec);
              else if (key !== "255,255,255" && key !== "0,0,0") unmatched += 1;
            }
            this._flush(rec);
            const note = img.naturalWidth !== this._W || img.naturalHeight !== this._H ? ` (scaled from ${img.naturalWidth} × ${img.naturalHeight})` : "";
            done(`Starting mask loaded${note}`, "loaded");
            if (unmatched) this._notice(`${formatCount(unmatched)} pixels of the starting mask match no label colour; they start unlabelled.`, "warn");
          } catch (error) {
            done("Starting mask unreadable (no CORS?)", "error");
            this._notice(`The starting mask cannot be read: ${error.message}`, "error");
          }
          resolve();
        };
        img.onerror = () => {
          done("Starting mask did not load", "error");
          this._notice(`The starting mask did not load: ${String(initial.src).slice(0, 200)}`, "error");
          resolve();
        };
        img.src = initial.src;
      });
    }

    // -------------------------------------------------------------- the label buffer

    _set(i, value, rec) {
      const old = this._buf[i];
      if (old === value) return;
      const x = i % this._W;
      const y = (i - x) / this._W;
      rec.push(i, old, value, x, y);
      this._write(i, old, value);
    }

    _write(i, old, value) {
      this._buf[i] = value;
      this._counts[old] -= 1;
      this._counts[value] += 1;
      const p = i * 4;
      const q = value * 4;
      const d = this._maskData.data;
      d[p] = this._lut[q];
      d[p + 1] = this._lut[q + 1];
      d[p + 2] = this._lut[q + 2];
      d[p + 3] = this._lut[q + 3];
    }

    _flush(rec, x0, y0, x1, y1) {
      if (x0 === undefined) [x0, y0, x1, y1] = [rec.x0, rec.y0, rec.x1, rec.y1];
      if (!(x1 >= x0)) return;
      this._maskCtx.putImageData(this._maskData, 0, 0, x0, y0, x1 - x0 + 1, y1 - y0 + 1);
    }

    _repaintAll() {
      const d = this._maskData.data;
      for (let i = 0, p = 0; i < this._buf.length; i += 1, p += 4) {
        const q = this._buf[i] * 4;
        d[p] = this._lut[q];
        d[p + 1] = this._lut[q + 1];
        d[p + 2] = this._lut[q + 2];
        d[p + 3] = this._lut[q + 3];
      }
      this._maskCtx.putImageData(this._maskData, 0, 0);
    }

    _stamp(cx, cy, value, rec) {
      const r = this._brushSize / 2;
      const W = this._W;
      const H = this._H;
      const y0 = Math.max(0, Math.floor(cy - r));
      const y1 = Math.min(H - 1, Math.ceil(cy + r));
      const x0 = Math.max(0, Math.floor(cx - r));
      const x1 = Math.min(W - 1, Math.ceil(cx + r));
      const r2 = r * r;
      for (let y = y0; y <= y1; y += 1) {
        const dy = y + 0.5 - cy;
        for (let x = x0; x <= x1; x += 1) {
          const dx = x + 0.5 - cx;
          if (dx * dx + dy * dy <= r2) this._set(y * W + x, value, rec);
        }
      }
      const px = Math.floor(cx);
      const py = Math.floor(cy);
      if (px >= 0 && py >= 0 && px < W && py < H) this._set(py * W + px, value, rec);
      return [x0, y0, x1, y1];
    }

    _segment(a, b, value, rec) {
      const dist = Math.hypot(b.x - a.x, b.y - a.y);
      const step = Math.max(0.5, this._brushSize / 4);
      const n = Math.max(1, Math.ceil(dist / step));
      let box = [Infinity, Infinity, -Infinity, -Infinity];
      for (let k = 1; k <= n; k += 1) {
        const t = k / n;
        const [x0, y0, x1, y1] = this._stamp(a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t, value, rec);
        box = [Math.min(box[0], x0), Math.min(box[1], y0), Math.max(box[2], x1), Math.max(box[3], y1)];
      }
      this._flush(rec, ...box);
    }

    _floodFill(sx, sy, value, rec) {
      const W = this._W;
      const H = this._H;
      const buf = this._buf;
      const target = buf[sy * W + sx];
      if (target === value) return false;
      const stack = [sy * W + sx];
      while (stack.length) {
        const i = stack.pop();
        if (buf[i] !== target) continue;
        const x = i % W;
        const y = (i - x) / W;
        let xl = x;
        while (xl > 0 && buf[y * W + xl - 1] === target) xl -= 1;
        let xr = x;
        while (xr < W - 1 && buf[y * W + xr + 1] === target) xr += 1;
        for (let xx = xl; xx <= xr; xx += 1) this._set(y * W + xx, value, rec);
        for (const ny of [y - 1, y + 1]) {
          if (ny < 0 || ny >= H) continue;
          let inRun = false;
          for (let xx = xl; xx <= xr; xx += 1) {
            const j = ny * W + xx;
            if (buf[j] === target) {
              if (!inRun) stack.push(j);
              inRun = true;
            } else inRun = false;
          }
        }
      }
      this._flush(rec);
      return true;
    }

    _fillPolygon(points, value, rec) {
      const W = this._W;
      const H = this._H;
      const ys = points.map((p) => p.y);
      const yStart = Math.max(0, Math.ceil(Math.min(...ys) - 0.5));
      const yEnd = Math.min(H - 1, Math.floor(Math.max(...ys) - 0.5));
      for (let y = yStart; y <= yEnd; y += 1) {
        const yc = y + 0.5;
        const xs = [];
        for (let k = 0; k < points.length; k += 1) {
          const a = points[k];
          const b = points[(k + 1) % points.length];
          if ((a.y <= yc && yc < b.y) || (b.y <= yc && yc < a.y)) xs.push(a.x + ((yc - a.y) * (b.x - a.x)) / (b.y - a.y));
        }
        xs.sort((p, q) => p - q);
        for (let k = 0; k + 1 < xs.length; k += 2) {
          const from = Math.max(0, Math.ceil(xs[k] - 0.5));
          const to = Math.min(W - 1, Math.floor(xs[k + 1] - 0.5));
          for (let x = from; x <= to; x += 1) this._set(y * W + x, value, rec);
        }
      }
      this._flush(rec);
    }

    _commit(rec, what) {
      if (!rec.size) return;
      this._undoStack.push(rec.finish(what));
      if (this._undoStack.length > MAX_HISTORY) this._undoStack.shift();
      this._redoStack = [];
      this._afterChange();
    }

    _afterChange() {
      this._updateHistoryButtons();
      this._updateAreas();
      this.dispatchEvent(new CustomEvent("gtseg-change", { bubbles: true, composed: true }));
    }

    _applyStep(step, field) {
      const values = step[field];
      for (let k = 0; k < step.idx.length; k += 1) {
        const i = step.idx[k];
        this._write(i, this._buf[i], values[k]);
      }
      const [x0, y0, x1, y1] = step.rect;
      this._flush(null, x0, y0, x1, y1);
    }

    _undo() {
      if (this._polygon.length) {
        this._polygon.pop();
        this._drawCursor();
        return;
      }
      const step = this._undoStack.pop();
      if (!step) return;
      this._applyStep(step, "before");
      this._redoStack.push(step);
      this._afterChange();
    }

    _redo() {
      const step = this._redoStack.pop();
      if (!step) return;
      this._applyStep(step, "after");
      this._undoStack.push(step);
      this._afterChange();
    }

    _reset() {
      if (!this._buf) return;
      const rec = new Recorder();
      const start = this._initial || new Uint8Array(this._buf.length);
      for (let i = 0; i < this._buf.length; i += 1) this._set(i, start[i], rec);
      this._flush(rec);
      this._commit(rec, "reset");
      this._notice("Back to the starting mask (Ctrl+Z brings your work back)", "info", 2500);
    }

    _updateHistoryButtons() {
      this._undoButton.disabled = !this._undoStack.length;
      this._redoButton.disabled = !this._redoStack.length;
    }

    // -------------------------------------------------------------- view

    _applyView() {
      const { scale, tx, ty } = this._view;
      this._stage.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
      this._stage.classList.toggle("pixelated", scale >= 3);
      this._statusZoom.textContent = `Zoom ${Math.round(scale * 100)}%`;
      this._drawCursor();
    }

    _fit() {
      if (!this._W) return;
      const rect = this._viewport.getBoundingClientRect();
      const margin = 24;
      const scale = Math.max(0.01, Math.min((rect.width - margin * 2) / this._W, (rect.height - margin * 2) / this._H, 8));
      this._view = { scale, tx: (rect.width - this._W * scale) / 2, ty: (rect.height - this._H * scale) / 2 };
      this._applyView();
    }

    _fitAgain() {
      this._userMovedView = false;
      this._fit();
    }

    _zoomAt(factor, sx, sy) {
      this._userMovedView = true;
      const v = this._view;
      const scale = Math.max(0.02, Math.min(40, v.scale * factor));
      const ix = (sx - v.tx) / v.scale;
      const iy = (sy - v.ty) / v.scale;
      this._view = { scale, tx: sx - ix * scale, ty: sy - iy * scale };
      this._applyView();
    }

    _zoomCentre(factor) {
      const rect = this._viewport.getBoundingClientRect();
      this._zoomAt(factor, rect.width / 2, rect.height / 2);
    }

    _toImage(event) {
      const rect = this._viewport.getBoundingClientRect();
      const sx = event.clientX - rect.left;
      const sy = event.clientY - rect.top;
      const v = this._view;
      return { sx, sy, x: (sx - v.tx) / v.scale, y: (sy - v.ty) / v.scale };
    }

    _toScreen(p) {
      const v = this._view;
      return { x: p.x * v.scale + v.tx, y: p.y * v.scale + v.ty };
    }

    // -------------------------------------------------------------- pointer and keys

    _bindEvents() {
      const vp = this._viewport;
      this._resize = new ResizeObserver(() => {
        const rect = vp.getBoundingClientRect();
        const dpr = window.devicePixelRatio || 1;
        this._cursor.width = Math.max(1, Math.round(rect.width * dpr));
        this._cursor.height = Math.max(1, Math.round(rect.height * dpr));
        if (this._W && !this._userMovedView) this._fit();
        else this._drawCursor();
      });
      this._resize.observe(vp);
      vp.addEventListener("contextmenu", (e) => e.preventDefault());
      vp.addEventListener("wheel", (e) => {
        e.preventDefault();
        const p = this._toImage(e);
        const delta = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaY;
        this._zoomAt(Math.pow(1.0015, -delta), p.sx, p.sy);
      }, { passive: false });
      vp.addEventListener("pointerdown", (e) => this._pointerDown(e));
      vp.addEventListener("pointermove", (e) => this._pointerMove(e));
      vp.addEventListener("pointerup", (e) => this._pointerUp(e));
      vp.addEventListener("pointercancel", (e) => this._pointerUp(e));
      vp.addEventListener("pointerleave", () => {
        this._pointer = null;
        this._statusPointer.textContent = "";
        this._drawCursor();
      });
      vp.addEventListener("dblclick", (e) => {
        if (this._tool === "polygon" && this._polygon.length >= 3) {
          e.preventDefault();
          this._closePolygon();
        }
      });
      document.addEventListener("keydown", (e) => this._keyDown(e));
      document.addEventListener("keyup", (e) => {
        if (e.code === "Space") {
          this._spaceDown = false;
          vp.classList.remove("panning-ready");
        }
      });
    }

    _pointerDown(e) {
      if (!this._buf || this._drag) return;
      this._viewport.focus({ preventScroll: true });
      const p = this._toImage(e);
      const pan = e.button === 1 || (e.button === 0 && (this._spaceDown || this._tool === "move"));
      if (pan) {
        e.preventDefault();
        this._drag = { kind: "pan", id: e.pointerId, sx: p.sx, sy: p.sy, tx: this._view.tx, ty: this._view.ty };
        this._viewport.setPointerCapture(e.pointerId);
        this._viewport.classList.add("panning");
        return;
      }
      if (e.button !== 0) return;
      e.preventDefault();
      if (this._tool === "brush" || this._tool === "eraser") {
        const value = this._tool === "eraser" ? 0 : this._label;
        if (!value && this._tool === "brush") {
          this._notice("Choose a label first.", "warn", 2000);
          return;
        }
        const rec = new Recorder();
        this._drag = { kind: "paint", id: e.pointerId, value, rec, last: p };
        this._viewport.setPointerCapture(e.pointerId);
        this._flush(rec, ...this._stamp(p.x, p.y, value, rec));
      } else if (this._tool === "fill") {
        const x = Math.floor(p.x);
        const y = Math.floor(p.y);
        if (x < 0 || y < 0 || x >= this._W || y >= this._H) return;
        if (!this._label) {
          this._notice("Choose a label first.", "warn", 2000);
          return;
        }
        const rec = new Recorder();
        this._floodFill(x, y, this._label, rec);
        this._commit(rec, "fill");
      } else if (this._tool === "polygon") {
        if (!this._label) {
          this._notice("Choose a label first.", "warn", 2000);
          return;
        }
        if (e.detail > 1) return; // the second click of a double-click closes (dblclick handler)
        const first = this._polygon[0];
        if (first && this._polygon.length >= 3) {
          const s = this._toScreen(first);
          if (Math.hypot(s.x - p.sx, s.y - p.sy) <= 9) {
            this._closePolygon();
            return;
          }
        }
        this._polygon.push({ x: p.x, y: p.y });
        this._drawCursor();
      }
    }

    _pointerMove(e) {
      const p = this._toImage(e);
      this._pointer = p;
      const drag = this._drag;
      if (drag && drag.id === e.pointerId) {
        if (drag.kind === "pan") {
          this._userMovedView = true;
          this._view = { scale: this._view.scale, tx: drag.tx + p.sx - drag.sx, ty: drag.ty + p.sy - drag.sy };
          this._applyView();
          return;
        }
        if (drag.kind === "paint") {
          const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [e];
          for (const ev of events.length ? events : [e]) {
            const q = this._toImage(ev);
            this._segment(drag.last, q, drag.value, drag.rec);
            drag.last = q;
          }
        }
      }
      this._updatePointerStatus(p);
      this._drawCursor();
    }

    _pointerUp(e) {
      const drag = this._drag;
      if (!drag || drag.id !== e.pointerId) return;
      this._drag = null;
      if (this._viewport.hasPointerCapture(e.pointerId)) this._viewport.releasePointerCapture(e.pointerId);
      this._viewport.classList.remove("panning");
      if (drag.kind === "paint") this._commit(drag.rec, drag.value ? "stroke" : "erase");
    }

    _closePolygon() {
      const points = this._polygon;
      this._polygon = [];
      if (points.length >= 3 && this._label) {
        const rec = new Recorder();
        this._fillPolygon(points, this._label, rec);
        this._commit(rec, "polygon");
      }
      this._drawCursor();
    }

    _updatePointerStatus(p) {
      if (!this._buf) return;
      const x = Math.floor(p.x);
      const y = Math.floor(p.y);
      if (x < 0 || y < 0 || x >= this._W || y >= this._H) {
        this._statusPointer.textContent = "";
        return;
      }
      const k = this._buf[y * this._W + x];
      this._statusPointer.textContent = `x ${x}, y ${y} · ${k ? this._labels[k - 1] : "unlabelled"}`;
    }

    _keyDown(e) {
      if (!this._ready || isEditable(e.composedPath()[0])) return;
      if (this._fullDialog.open || this._keysDialog.open) return;
      const ctrl = e.ctrlKey || e.metaKey;
      const key = e.key;
      let handled = true;
      if (ctrl && (key === "z" || key === "Z")) {
        if (e.shiftKey) this._redo();
        else this._undo();
      } else if (ctrl && (key === "y" || key === "Y")) this._redo();
      else if (ctrl || e.altKey) handled = false;
      else if (e.code === "Space") {
        if (!this._spaceDown) this._viewport.classList.add("panning-ready");
        this._spaceDown = true;
      } else if (key === "Enter" && this._polygon.length) this._closePolygon();
      else if (key === "Escape" && this._polygon.length) {
        this._polygon = [];
        this._drawCursor();
      } else if (key === "Backspace" && this._polygon.length) {
        this._polygon.pop();
        this._drawCursor();
      } else if (/^[1-9]$/.test(key) && Number(key) <= (this._labels || []).length) this._setLabel(Number(key));
      else if (key === "b" || key === "B") this._setTool("brush");
      else if (key === "p" || key === "P") this._setTool("polygon");
      else if (key === "e" || key === "E") this._setTool("eraser");
      else if (key === "f" || key === "F") this._setTool("fill");
      else if (key === "m" || key === "M") this._setTool("move");
      else if (key === "h" || key === "H") this._toggleMask();
      else if (key === "[") this._setBrushSize(this._brushSize / 1.25);
      else if (key === "]") this._setBrushSize(Math.max(this._brushSize + 1, this._brushSize * 1.25));
      else if (key === "+" || key === "=") this._zoomCentre(1.25);
      else if (key === "-" || key === "_") this._zoomCentre(0.8);
      else if (key === "0") this._fitAgain();
      else if (key === "?") this._openDialog(this._keysDialog);
      else handled = false;
      if (handled) e.preventDefault();
    }

    _drawCursor() {
      const canvas = this._cursor;
      if (!canvas || !this._ready) return;
      const ctx = canvas.getContext("2d");
      const dpr = window.devicePixelRatio || 1;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      const color = this._label ? this._colors[this._label - 1] : "#ffffff";
      if (this._tool === "polygon" && this._polygon.length) {
        const pts = this._polygon.map((q) => this._toScreen(q));
        ctx.lineWidth = 2;
        ctx.strokeStyle = color;
        ctx.fillStyle = color + "33";
        ctx.beginPath();
        ctx.moveTo(pts[0].x, pts[0].y);
        for (const q of pts.slice(1)) ctx.lineTo(q.x, q.y);
        if (this._pointer) ctx.lineTo(this._pointer.sx, this._pointer.sy);
        ctx.fill();
        ctx.stroke();
        pts.forEach((q, i) => {
          ctx.beginPath();
          ctx.arc(q.x, q.y, i === 0 ? 6 : 4, 0, Math.PI * 2);
          ctx.fillStyle = i === 0 ? "#ffffff" : color;
          ctx.fill();
          ctx.lineWidth = 1.5;
          ctx.strokeStyle = "#111111";
          ctx.stroke();
        });
      }
      const p = this._pointer;
      if (!p || this._drag && this._drag.kind === "pan") return;
      if (this._tool === "brush" || this._tool === "eraser") {
        const r = Math.max(1.5, (this._brushSize / 2) * this._view.scale);
        ctx.beginPath();
        ctx.arc(p.sx, p.sy, r, 0, Math.PI * 2);
        ctx.lineWidth = 3;
        ctx.strokeStyle = "rgba(0,0,0,0.55)";
        ctx.stroke();
        ctx.lineWidth = 1.5;
        ctx.strokeStyle = this._tool === "eraser" ? "#ffffff" : color;
        ctx.stroke();
        if (this._tool === "eraser") {
          ctx.setLineDash([3, 3]);
          ctx.strokeStyle = "#111111";
          ctx.stroke();
          ctx.setLineDash([]);
        }
      }
    }

    // -------------------------------------------------------------- the answer

    _answer() {
      if (!this._buf) return null;
      const labelMappings = {};
      this._labels.forEach((name, i) => {
        if (this._counts[i + 1] > 0) labelMappings[name] = { color: this._colors[i] };
      });
      const data = this._maskCanvas.toDataURL("image/png");
      const answer = {
        inputImageProperties: { height: this._H, width: this._W },
        labelMappings,
        labeledImage: { pngImageData: data.slice(data.indexOf(",") + 1) },
      };
      if (this._hasInitial) answer.initialValueModified = this._modified();
      return answer;
    }

    _modified() {
      const start = this._initial;
      if (!start) return this._undoStack.length > 0;
      const buf = this._buf;
      for (let i = 0; i < buf.length; i += 1) if (buf[i] !== start[i]) return true;
      return false;
    }

    _validate() {
      if (!this._buf) return "The image has not loaded yet.";
      return null;
    }
  }

  // ------------------------------------------------------------------ <crowd-button>

  class CrowdButton extends HTMLElement {
    connectedCallback() {
      if (this.shadowRoot) return;
      const root = this.attachShadow({ mode: "open" });
      const variant = this.getAttribute("variant") || "normal";
      const button = el("button", { type: "button", class: `crowd-button ${variant}`, part: "button" }, el("slot", {}));
      button.disabled = this.hasAttribute("disabled");
      button.addEventListener("click", () => {
        const action = this.getAttribute("form-action");
        const form = this.closest("crowd-form");
        if (form && action === "submit") form.submit();
        else if (form && action === "reset") form.reset && form.reset();
      });
      root.append(stylesheet(), button);
    }
  }

  // ------------------------------------------------------------------ <crowd-form>

  class CrowdForm extends HTMLElement {
    connectedCallback() {
      if (this._started) return;
      this._started = true;
      whenParsed(() => this._setup());
    }

    _setup() {
      preparePage();
      this.addEventListener("click", (e) => {
        const target = e.target.closest && e.target.closest('button[type="submit"], input[type="submit"]');
        if (target && this.contains(target)) {
          e.preventDefault();
          this.submit();
        }
      });
      const explicit = this.querySelector('crowd-button[form-action="submit"], button[type="submit"], input[type="submit"]');
      if (!explicit) {
        // "If a crowd-button of type submit is not included, it will automatically be appended."
        const button = el("button", { type: "button", class: "gtseg-submit", onclick: () => this.submit() }, "Submit");
        this._submitButton = button;
        const tool = this.querySelector("crowd-semantic-segmentation");
        if (tool) {
          customElements.whenDefined("crowd-semantic-segmentation").then(() => tool._placeSubmit(button));
        } else {
          this.append(el("div", { class: "gtseg-form-actions" }, button));
        }
      }
    }

    /** The crowd-form output: {name: value} of every named crowd element and native input. */
    collect() {
      const output = {};
      for (const node of this.querySelectorAll("[name]")) {
        const name = node.getAttribute("name");
        if (!name) continue;
        if (node instanceof CrowdSemanticSegmentation) {
          output[name] = node.value;
        } else if (node instanceof HTMLInputElement) {
          if (node.type === "submit" || node.type === "button" || node.type === "file") continue;
          if (node.type === "checkbox") output[name] = node.checked;
          else if (node.type === "radio") {
            if (!(name in output)) output[name] = {};
            output[name][node.value] = node.checked;
          } else output[name] = node.value;
        } else if (node instanceof HTMLTextAreaElement || node instanceof HTMLSelectElement) {
          output[name] = node.value;
        } else if ("value" in node && node.tagName.toLowerCase().startsWith("crowd-")) {
          output[name] = node.value;
        }
      }
      return output;
    }

    async submit() {
      if (this._busy) return;
      for (const tool of this.querySelectorAll("crowd-semantic-segmentation")) {
        const problem = tool._validate && tool._validate();
        if (problem) {
          this._toast(problem, "warn");
          return;
        }
      }
      const event = new Event("submit", { bubbles: true, cancelable: true });
      if (!this.dispatchEvent(event)) return; // the template's onsubmit said no
      const output = this.collect();
      const body = { answerContent: output, timeSpentInSeconds: Math.round((Date.now() - OPENED_AT) / 100) / 10 };
      if (!CONFIG.submit) {
        console.log("crowd-form output", output);
        this._showResult({ answerContent: output, offline: true });
        return;
      }
      this._busy = true;
      if (this._submitButton) this._submitButton.disabled = true;
      try {
        const response = await fetch(CONFIG.submit, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        const result = await response.json();
        if (!response.ok) throw new Error(result.error || `HTTP ${response.status}`);
        this._showResult(result);
      } catch (error) {
        this._toast(`The answer was not saved: ${error.message}`, "error");
      } finally {
        this._busy = false;
        if (this._submitButton) this._submitButton.disabled = false;
      }
    }

    _toast(text, kind) {
      const tool = this.querySelector("crowd-semantic-segmentation");
      if (tool && tool._notice) tool._notice(text, kind);
      else window.alert(text);
    }

    _showResult(result) {
      let dialog = this._dialog;
      if (!dialog) {
        const host = el("div", { class: "gtseg-result-host" });
        this._resultRoot = host.attachShadow({ mode: "open" });
        dialog = el("dialog", { class: "dialog result", "aria-labelledby": "result-title" });
        this._resultRoot.append(stylesheet(), dialog);
        document.body.append(host);
        this._dialog = dialog;
      }
      const rows = [];
      const decoded = result.decoded;
      let title = "Answer submitted";
      if (result.offline) title = "The form output (no preview server)";
      else if (CONFIG.mode === "human") title = "Answer sent to the job";
      else if (result.answer) title = `Answer ${result.answer} saved`;
      if (decoded) {
        for (const cls of decoded.classes || []) {
          rows.push(
            el(
              "tr",
              { class: cls.index === 0 ? "background" : "" },
              el("td", {}, el("span", { class: "swatch", style: `--c:${cls.color}` }), cls.name),
              el("td", { class: "num" }, formatCount(cls.pixels)),
              el("td", { class: "num" }, `${(cls.share * 100).toFixed(2)}%`)
            )
          );
        }
      }
      const problems = (result.problems || []).map((p) => el("li", {}, p));
      const files = (result.files || []).map((f) => el("li", {}, el("code", {}, f)));
      const actions = [];
      if (CONFIG.mode === "human") {
        actions.push(el("p", { class: "waiting" }, "Waiting for your next task…"));
      } else {
        actions.push(el("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Keep painting"));
        if (CONFIG.nextTask) actions.push(el("a", { class: "primary", href: CONFIG.nextTask }, "Next image"));
      }
      dialog.replaceChildren(
        el("div", { class: "dialog-head" }, el("h2", { id: "result-title" }, icon("check"), title), CONFIG.mode === "human" ? null : el("button", { type: "button", class: "icon-button", "aria-label": "Close", onclick: () => dialog.close() }, icon("close"))),
        el(
          "div",
          { class: "dialog-body" },
          decoded
            ? [
                el("p", { class: "lead" }, "How gtseg's consolidation Lambda decodes this answer:"),
                el("table", { class: "areas" }, el("thead", {}, el("tr", {}, el("th", {}, "class"), el("th", { class: "num" }, "pixels"), el("th", { class: "num" }, "share"))), el("tbody", {}, rows)),
                el(
                  "p",
                  { class: "decode-stats" },
                  `${formatCount(decoded.matched)} pixels matched a label colour exactly, ${formatCount(decoded.snapped)} snapped, `,
                  el("strong", {}, `${formatCount(decoded.unmatched)} unmatched`),
                  decoded.initialValueModified == null ? "" : ` · initialValueModified: ${decoded.initialValueModified}`
                ),
              ]
            : null,
          problems.length ? el("ul", { class: "problems" }, problems) : null,
          files.length ? [el("p", { class: "lead" }, "Written:"), el("ul", { class: "files" }, files)] : null,
          result.offline ? el("pre", { class: "json" }, JSON.stringify(result.answerContent, (k, v) => (k === "pngImageData" ? `${String(v).slice(0, 48)}… (${String(v).length} base64 characters)` : v), 2)) : null
        ),
        el("div", { class: "dialog-actions" }, actions)
      );
      if (!dialog.open) dialog.showModal();
      if (CONFIG.mode === "human" && CONFIG.next) this._waitForNext();
    }

    async _waitForNext() {
      for (;;) {
        try {
          const response = await fetch(CONFIG.next, { cache: "no-store" });
          const next = await response.json();
          if (next.state === "task" && next.url) {
            window.location.assign(next.url);
            return;
          }
          if (next.state === "done") {
            window.location.assign(next.url || "/");
            return;
          }
        } catch (_error) {
          // the job may be between tasks, or over: try again
        }
        await new Promise((resolve) => setTimeout(resolve, 700));
      }
    }
  }

  customElements.define("crowd-semantic-segmentation", CrowdSemanticSegmentation);
  customElements.define("crowd-button", CrowdButton);
  customElements.define("crowd-form", CrowdForm);

  // For tests and the curious: the colour rule, shared with gtseg.core.labels.
  window.gtsegStandin = Object.freeze({ version: 1, labelColors, defaultColors, GROUND_TRUTH_COLORS: GROUND_TRUTH_COLORS.slice(), config: CONFIG });
})();
