"""The live trial table, ResultGrid.plot() and %tune in a real kernel (nbclient)."""
from __future__ import annotations

import base64

import nbformat
from nbclient import NotebookClient


def test_table_plot_and_magic_in_a_real_kernel(tmp_path):
    storage = str(tmp_path / "results")
    cells = [
        "import time, miniray\nfrom miniray import tune\nminiray.init(num_cpus=2)",
        "def objective(config):\n"
        "    for step in range(5):\n"
        "        time.sleep(0.01)\n"
        "        tune.report({'loss': (config['x'] - 2) ** 2 + 1 / (step + 1)})\n"
        f"results = tune.Tuner(objective, param_space={{'x': tune.grid_search([0, 1, 2, 3])}},\n"
        "    tune_config=tune.TuneConfig(metric='loss', mode='min'),\n"
        f"    run_config=tune.RunConfig(name='nb', storage_path={storage!r})).fit()",
        "%load_ext miniray_magics\n%tune",
        "results.plot()",
        f"%tune {storage}/nb --metric loss --mode min --figsize 6,3 --save {tmp_path}/curves.png",
        "%tune no_such_variable",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = [cell.outputs for cell in nb.cells]
    assert not [o for o in outs[0] + outs[1] if o.output_type == "error"], outs[1]
    kinds = [set(o.get("data", {})) for o in outs[1]]
    assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds), kinds  # live
    final = [o["data"]["text/html"] for o in outs[1] if "text/html" in o.get("data", {})]
    assert final and "Tune finished" in final[-1] and "4 TERMINATED" in final[-1]
    for index in (2, 3, 4):
        pngs = [o["data"]["image/png"] for o in outs[index] if "image/png" in o.get("data", {})]
        assert pngs, (index, outs[index])
        assert base64.b64decode(pngs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:4] == b"\x89PNG"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (600, 300)
    said = " ".join(o.get("text", "") + o.get("evalue", "") + o.get("ename", "") for o in outs[5])
    assert "UsageError" in said and "no_such_variable" in said, outs[5]
