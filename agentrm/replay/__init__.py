"""Replay: watch, export and re-execute stored trajectories.

Consumes the trace store (`agentrm.traces`) and task preparation (`agentrm.tasks.prepare`);
nothing in `traces/` imports this package.

    view.py       the view model every replay renders (pure) and loading from a store or file
    timing.py     one clock for the player, the asciicast and the HTML page
    render.py     rich renderables: header, turns, full transcript
    player.py     the interactive terminal player
    asciicast.py  asciinema v2 export
    html.py       self-contained HTML page (assets.py holds its CSS/JS)
    rerun.py      re-execute recorded actions in a fresh sandbox and report divergences
"""
