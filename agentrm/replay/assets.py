"""CSS and JS inlined into the HTML replay page (kept here so the page needs no files)."""

CSS = """
:root { --bg:#1e1f1c; --fg:#e8e8e3; --dim:#8f908a; --card:#272822; --line:#3e3d32;
        --good:#3fb950; --mid:#d29922; --bad:#f85149; --accent:#66d9ef; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:14px/1.45 system-ui, sans-serif; }
section.summary { background:var(--card); padding:8px 16px; }
header { position:sticky; top:0; background:var(--card); border-bottom:1px solid var(--line);
         padding:4px 16px; z-index:2; }
h1 { font-size:16px; margin:0 0 4px; color:var(--accent); }
h2 { font-size:15px; margin:0 0 8px; border-bottom:1px solid var(--line); padding-bottom:4px; }
h2 small { color:var(--dim); font-weight:normal; }
table.facts th { text-align:left; padding-right:12px; color:var(--dim); font-weight:normal; }
nav { margin-top:6px; display:flex; gap:8px; align-items:center; flex-wrap:wrap; }
button { background:var(--line); color:var(--fg); border:1px solid var(--dim); border-radius:4px;
         padding:2px 10px; cursor:pointer; }
input[type=number] { width:4em; }
main { padding:12px 16px; }
section.turn { display:none; margin-bottom:18px; }
section.turn.current, body.all section.turn { display:block; }
.grid { display:grid; grid-template-columns:minmax(0,1fr) 300px; gap:16px; }
pre { margin:4px 0; padding:6px 8px; background:var(--card); border-radius:4px;
      white-space:pre-wrap; word-break:break-word; font:13px/1.35 ui-monospace, monospace; }
pre.reasoning, pre.task { background:none; padding:0; font-family:inherit; font-size:14px; }
.callname { color:var(--accent); font-weight:bold; margin-top:6px; }
.output { border-left:3px solid var(--accent); padding-left:6px; margin:6px 0; }
.output.bad { border-left-color:var(--bad); }
.facts { color:var(--dim); font-size:12px; }
details.fold summary { color:var(--mid); cursor:pointer; font-size:12px; }
.invalid { color:var(--bad); font-weight:bold; }
table.scores { border-collapse:collapse; width:100%; }
table.scores td { padding:2px 4px; }
td.label { color:var(--dim); max-width:110px; overflow:hidden; text-overflow:ellipsis; }
td.num { text-align:right; font-family:ui-monospace, monospace; }
.bar { position:relative; display:inline-block; width:110px; height:10px; background:var(--line);
       border-radius:2px; vertical-align:middle; }
.bar.signed::after { content:""; position:absolute; left:50%; top:-2px; bottom:-2px;
                     border-left:1px solid var(--fg); }
.bar.none { background:none; color:var(--dim); font-size:11px; height:auto; }
.fill { position:absolute; top:0; bottom:0; border-radius:2px; }
.fill.good { background:var(--good); } .fill.mid { background:var(--mid); }
.fill.bad { background:var(--bad); }
.playing pre.stream { border:1px dashed var(--accent); }
"""

JS = r"""
(function () {
  const turns = Array.from(document.querySelectorAll('section.turn'));
  const timing = JSON.parse(document.getElementById('timing').textContent);
  const pos = document.getElementById('pos');
  const playBtn = document.getElementById('play');
  let cur = 0, timers = [];
  function show(i) {
    cur = Math.max(0, Math.min(turns.length - 1, i));
    turns.forEach((t, k) => t.classList.toggle('current', k === cur));
    pos.textContent = 'turn ' + (cur + 1) + '/' + turns.length;
    if (document.body.classList.contains('all')) turns[cur].scrollIntoView();
    history.replaceState(null, '', '#turn-' + cur);
  }
  function stop() {
    timers.forEach(clearTimeout); timers = [];
    document.querySelectorAll('pre.stream').forEach(s => s.remove());
    document.querySelectorAll('.output > *').forEach(e => e.style.display = '');
    document.body.classList.remove('playing'); playBtn.textContent = 'play';
  }
  function later(ms, fn) { timers.push(setTimeout(fn, ms)); }
  function play(from) {
    stop(); document.body.classList.add('playing'); playBtn.textContent = 'pause';
    const speed = Math.max(0.1, parseFloat(document.getElementById('speed').value) || 1);
    const idle = 2.0;  // compress pauses longer than this, like asciinema's idle_time_limit
    let clock = 0, last = timing[from] ? timing[from].start : 0;
    function at(t) { clock += Math.min(idle, Math.max(0, t - last)) / speed; last = Math.max(last, t); return clock * 1000; }
    for (let i = from; i < turns.length; i++) {
      const tt = timing[i];
      later(at(tt.start), () => {
        show(i);
        turns[i].querySelectorAll('.output').forEach(o => {
          Array.from(o.children).forEach(c => { if (!c.classList.contains('facts')) c.style.display = 'none'; });
          const s = document.createElement('pre'); s.className = 'stream'; o.appendChild(s);
        });
      });
      tt.calls.forEach((events, c) => events.forEach(([t, chunk]) => later(at(t), () => {
        const s = turns[i].querySelector('#out-' + i + '-' + c + ' pre.stream');
        if (s) s.textContent += chunk;
      })));
      later(at(tt.end), () => {
        turns[i].querySelectorAll('pre.stream').forEach(s => s.remove());
        turns[i].querySelectorAll('.output > *').forEach(e => e.style.display = '');
      });
    }
    later(clock * 1000 + 50, stop);
  }
  document.getElementById('first').onclick = () => { stop(); show(0); };
  document.getElementById('last').onclick = () => { stop(); show(turns.length - 1); };
  document.getElementById('prev').onclick = () => { stop(); show(cur - 1); };
  document.getElementById('next').onclick = () => { stop(); show(cur + 1); };
  playBtn.onclick = () => timers.length ? stop() : play(cur);
  document.getElementById('all').onchange = e => document.body.classList.toggle('all', e.target.checked);
  document.addEventListener('keydown', e => {
    if (e.target.tagName === 'INPUT') return;
    if (e.key === 'ArrowRight' || e.key === 'n') { stop(); show(cur + 1); }
    else if (e.key === 'ArrowLeft' || e.key === 'p') { stop(); show(cur - 1); }
    else if (e.key === ' ') { e.preventDefault(); playBtn.click(); }
  });
  const m = /^#turn-(\d+)$/.exec(location.hash);
  show(m ? parseInt(m[1], 10) : 0);
})();
"""
