"""``gridflow info``: a short summary of a trajectory file, its damaged frames and whether it can be resumed."""

from __future__ import annotations

from gridflow.cli.arguments import printable


def add_parser(sub) -> None:
    """Register ``gridflow info`` on the verbs' subparsers."""
    info = sub.add_parser("info", help="summarise a trajectory file")
    info.add_argument("file", help="trajectory file (.h5)")


def command(args) -> int:
    from gridflow.io.trajectory import open_trajectory

    tr = open_trajectory(args.file)
    print(summary(tr))
    return 0


def summary(tr) -> str:
    """A short human-readable summary of a trajectory (strings from the file shown without control characters)."""
    g = tr.grid
    case = tr.case
    name, description = printable(case.get("name", "")), printable(case.get("description", ""))
    lines = [
        f"file:      {printable(tr.path)}",
        f"case:      {name}" + (f" ({description})" if description else ""),
        f"status:    {printable(tr.status)}",
        f"flow:      {printable(tr.attrs.get('flow', '?'))}",
        f"grid:      {g.dim}D, cells {list(g.cells)}, box {list(g.lower)} .. {list(g.upper)}, {printable(g.boundary)}",
    ]
    if len(tr.time):
        lines += [
            f"frames:    {len(tr.time)}, t = {tr.time[0]:g} .. {tr.time[-1]:g}",
            f"lambda:    {tr.lambda_[-1]:.6g} at the last frame",
            f"KL:        {tr.kl[0]:.6g} -> {tr.kl[-1]:.6g} (KL(rho_t || pi) at first and last frame)",
            f"mass:      {tr.mass[-1]:.15g}",
        ]
    else:
        lines.append("frames:    none written")
    lines += _error_estimate_lines(tr)
    if "max_cell_peclet" in tr.attrs:
        lines.append(f"peclet:    {float(tr.attrs['max_cell_peclet']):.3g} (largest cell Peclet number h|grad log pi|)")
    lines += _damage_lines(tr)
    if tr.attrs.get("warnings"):
        lines.append(f"warnings:  {printable(tr.attrs['warnings'])}")
    return "\n".join(line for line in lines if not line.endswith(":"))


def _error_estimate_lines(tr) -> list[str]:
    """The ``error:`` line of :func:`summary`: the stored L1 error estimate (max over times, last frame)."""
    import numpy as np

    est = tr.extra.get("error_estimate")
    if est is None or not len(est) or not np.isfinite(est).any():
        return []
    return [f"error:     L1 error estimate max {float(np.nanmax(est)):.3g} (t = "
            f"{float(tr.time[int(np.nanargmax(est))]):g}), {float(est[-1]):.3g} at the last frame "
            "(Richardson, grid 3 times coarser)"]


def _damage_lines(tr) -> list[str]:
    """Lines of :func:`summary` listing the damaged frames (at most 10 shown) and whether
    ``--resume`` would accept the file."""
    from gridflow.io.runner import resume_verdict
    from gridflow.io.trajectory_damage import damaged_frames

    lines = []
    damaged = damaged_frames(tr)
    if damaged:
        lines.append(f"damaged:   {len(damaged)} frame(s): " + ", ".join(str(k) for k, _, _ in damaged[:20])
                     + (" ..." if len(damaged) > 20 else ""))
        for k, t, problem in damaged[:10]:
            lines.append(f"           frame {k} (t = {t:.10g}): {problem}")
    if tr.status != "complete" or damaged:
        ok, why = resume_verdict(tr)
        lines.append(f"resume:    {'accepted' if ok else 'refused'}: {printable(why)}")
    return lines
