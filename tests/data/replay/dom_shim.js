// A minimal DOM for running the replay page's inline script under node (no browser here).
// Built from the page's real element tree (serialised by the Python test); supports the
// selectors the script uses: tag, .class, #id, *, descendant and child (>) combinators.
'use strict';
const fs = require('fs');
const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

class ClassList {
  constructor(s) { this.s = new Set((s || '').split(/\s+/).filter(Boolean)); }
  contains(c) { return this.s.has(c); }
  add(c) { this.s.add(c); }
  remove(c) { this.s.delete(c); }
  toggle(c, on) { if (on === undefined) on = !this.s.has(c); on ? this.s.add(c) : this.s.delete(c); return on; }
}
class El {
  constructor(node, parent) {
    this.tagName = (node.tag || 'div').toUpperCase(); this.parent = parent || null;
    this.attrs = node.attrs || {}; this.id = this.attrs.id || '';
    this.classList = new ClassList(this.attrs.class); this.style = {};
    this.textContent = node.text || ''; this.value = this.attrs.value || '';
    this.children = (node.children || []).map(c => new El(c, this));
  }
  appendChild(e) { e.parent = this; this.children.push(e); return e; }
  remove() { if (this.parent) this.parent.children = this.parent.children.filter(c => c !== this); }
  set className(v) { this.classList = new ClassList(v); }
  scrollIntoView() {}
  *walk() { for (const c of this.children) { yield c; yield* c.walk(); } }
  matchesSimple(sel) {
    if (sel === '*') return true;
    const m = /^([a-z0-9]*)((?:[.#][\w-]+)*)$/i.exec(sel); if (!m) throw new Error('selector ' + sel);
    if (m[1] && m[1].toUpperCase() !== this.tagName) return false;
    for (const part of m[2].match(/[.#][\w-]+/g) || []) {
      if (part[0] === '.' && !this.classList.contains(part.slice(1))) return false;
      if (part[0] === '#' && this.id !== part.slice(1)) return false;
    }
    return true;
  }
  matches(parts) {  // parts: [simple, comb, simple, ...] matched right to left
    if (!this.matchesSimple(parts[parts.length - 1])) return false;
    if (parts.length === 1) return true;
    const comb = parts[parts.length - 2], rest = parts.slice(0, -2);
    if (comb === '>') return !!this.parent && this.parent.matches(rest);
    for (let p = this.parent; p; p = p.parent) if (p.matches(rest)) return true;
    return false;
  }
  querySelectorAll(sel) {
    const parts = sel.replace(/\s*>\s*/g, ' > ').trim().split(/\s+/)
      .flatMap((p, i, a) => (i && a[i - 1] !== '>' && p !== '>') ? [' ', p] : [p]);
    return Array.from(this.walk()).filter(e => e.matches(parts));
  }
  querySelector(sel) { return this.querySelectorAll(sel)[0] || null; }
}
const root = new El({tag: 'html', children: [input.tree]});
const body = root.querySelector('body');
let keyHandler = null, now = 0, seq = 0, timers = [];
global.document = {
  body, querySelectorAll: s => root.querySelectorAll(s), querySelector: s => root.querySelector(s),
  getElementById: id => root.querySelector('#' + id),
  createElement: tag => new El({tag}),
  addEventListener: (type, fn) => { if (type === 'keydown') keyHandler = fn; },
};
global.history = {replaceState: () => {}};
global.location = {hash: ''};
global.setTimeout = (fn, ms) => { const t = {at: now + ms, seq: seq++, fn}; timers.push(t); return t; };
global.clearTimeout = t => { timers = timers.filter(x => x !== t); };
function runTimers(observe) {
  while (timers.length) {
    timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const t = timers.shift(); now = t.at; t.fn(); observe();
  }
}
const key = k => keyHandler({key: k, target: {tagName: 'BODY'}, preventDefault() {}});
const current = () => root.querySelectorAll('section.turn').findIndex(s => s.classList.contains('current'));
const click = id => document.getElementById(id).onclick();

eval(input.script);
const out = {initial: current(), pos: document.getElementById('pos').textContent, steps: []};
click('next'); out.steps.push(current());
key('ArrowRight'); out.steps.push(current());
key('p'); out.steps.push(current());
click('last'); out.steps.push(current());
click('next'); out.steps.push(current());  // stays on the last turn
click('first'); out.steps.push(current());
document.getElementById('speed').value = '4';
click('play');
out.playingLabel = document.getElementById('play').textContent;
const seen = [], streams = {};
runTimers(() => {
  if (seen[seen.length - 1] !== current()) seen.push(current());
  for (const s of root.querySelectorAll('pre.stream')) {
    const id = s.parent.id; if (s.textContent) streams[id] = s.textContent;
  }
});
out.seen = seen; out.streams = streams; out.end = current(); out.elapsedMs = now;
out.leftoverStreams = root.querySelectorAll('pre.stream').length;
out.hiddenAfter = root.querySelectorAll('.output > *').filter(e => e.style.display === 'none').length;
out.finalLabel = document.getElementById('play').textContent;
console.log(JSON.stringify(out));
