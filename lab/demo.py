"""`kubereach demo`: bring up the lab and show how to ask kubereach about it.

Until the Slack app lands this is the lab part of the demo: it builds the lab, prints its status and
the questions to ask, and (interactively) waits for Ctrl-C before taking the lab down again.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from lab import lifecycle
from lab.plan import LabOptions


def run_demo(prefix: str, script: Path | None, *, keep: bool) -> None:
    """Bring the lab up, show it, and take it down at the end (unless `keep`)."""
    result = lifecycle.up(LabOptions(prefix=prefix))
    try:
        status = lifecycle.status(prefix)
        click.echo(f"kubereach lab {prefix} is up in {result.seconds:.1f} s")
        for node in status["nodes"]:
            click.echo(f"  {node['name']}  {node['ip']}  pods {node['pod_cidr']}  agent {node['agent'] or '-'}")
        for pod in status["pods"]:
            click.echo(f"  pod {pod['namespace']}/{pod['name']}  {pod['ip']}  on {pod['node']}")
        click.echo(f"config: {status['config']}")
        click.echo("try:")
        click.echo(f'  kubereach --config {status["config"]} ask "why can\'t frontend reach ledger"')
        click.echo(f"  kubereach lab --prefix {prefix} fault ip-forward-off --node node-2")
        if script is not None:
            for line in script.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    click.echo(f"> {line}")
            return
        click.echo("Ctrl-C ends the demo and removes the lab.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("")
    finally:
        if not keep:
            lifecycle.down(prefix)
            click.echo(f"lab {prefix} is down")
