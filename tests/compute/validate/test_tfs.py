"""The transcription-factor list of the gene-ranking section (issue 21): JASPAR 2026 CORE human
profiles read from the pyjaspar wheel, mapped to current HGNC symbols, and the TF share of a top
list on known inputs."""

from __future__ import annotations

import math
import sqlite3
from types import SimpleNamespace

import pandas as pd
import pytest

from compute.validate import (
    JASPAR_RELEASE,
    gene_ranking_table,
    jaspar_human_tf_names,
    split_dimers,
    tf_list,
    tf_share,
    to_current_symbols,
)


def test_the_shipped_tf_list_holds_known_tfs_and_no_housekeeping_genes():
    tfs = tf_list()
    assert tfs.release == JASPAR_RELEASE == "JASPAR2026"
    # 790 distinct names in JASPAR 2026 CORE for taxon 9606, one of them the EWSR1-FLI1 fusion
    assert tfs.n_names == 790 and tfs.count == 789 and tfs.unmapped == ("EWSR1-FLI1",)
    assert {"SPI1", "CEBPB", "TBX21", "PAX5", "GATA3", "FOS", "JUN", "IRF4"} <= tfs.symbols
    assert not {"ACTB", "RPL13", "GAPDH", "MT-CO1", "CD14", "EWSR1-FLI1"} & tfs.symbols
    summary = tfs.summary()
    assert summary["count"] == 789 and summary["unmapped"] == ["EWSR1-FLI1"] and "JASPAR2026" in summary["source"]
    assert tf_list() is tfs  # read once per process


def _jaspar_like(path, rows):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE MATRIX (ID integer, COLLECTION text, BASE_ID text, VERSION integer, NAME text)")
    con.execute("CREATE TABLE MATRIX_SPECIES (ID integer, TAX_ID text)")
    for i, (collection, name, taxa) in enumerate(rows):
        con.execute("INSERT INTO MATRIX VALUES (?, ?, ?, 1, ?)", (i, collection, f"MA{i:04d}", name))
        for tax in taxa:
            con.execute("INSERT INTO MATRIX_SPECIES VALUES (?, ?)", (i, tax))
    con.commit()
    con.close()


def test_jaspar_names_are_the_human_core_profiles_only(tmp_path):
    db = tmp_path / "mini.sqlite"
    _jaspar_like(db, [("CORE", "SPI1", ["9606"]), ("CORE", "SPI1", ["9606"]),  # a second version of one profile
                      ("CORE", "FOS::JUN", ["9606"]), ("CORE", "Gata1", ["10090"]),  # mouse
                      ("UNVALIDATED", "ZNF99", ["9606"]), ("CORE", "CEBPB", ["10090", "9606"])])
    assert jaspar_human_tf_names(db) == ["CEBPB", "FOS::JUN", "SPI1"]
    assert split_dimers(["FOS::JUN", "JUN", "SPI1", "JUN::JUNB"]) == ["FOS", "JUN", "JUNB", "SPI1"]
    # read-only: a missing database is an error, never a new empty file
    with pytest.raises(sqlite3.OperationalError):
        jaspar_human_tf_names(tmp_path / "absent.sqlite")
    assert not (tmp_path / "absent.sqlite").exists()


def test_names_map_to_current_symbols_without_guessing():
    table = SimpleNamespace(current={"SPI1": "SPI1", "NKX2-1": "NKX2-1"}, same_gene={"OLDSPELL": "SPI1"},
                            previous={"TITF1": ("NKX2-1",), "SHARED": ("SPI1", "NKX2-1")}, alias={"PU.1": ("SPI1",)})
    mapped, unmapped = to_current_symbols(["spi1", "TITF1", "OLDSPELL", "SHARED", "PU.1", "EWSR1-FLI1"], table)
    assert mapped == {"spi1": "SPI1", "TITF1": "NKX2-1", "OLDSPELL": "SPI1"}
    assert unmapped == ["SHARED", "PU.1", "EWSR1-FLI1"]  # ambiguous previous symbol, alias, fusion


def test_tf_share_on_known_inputs():
    assert tf_share(["SPI1", "ACTB", "CEBPB", "RPL13"], {"SPI1", "CEBPB", "GATA3"}) == 0.5
    assert tf_share(["SPI1", "SPI1", "ACTB"], frozenset({"SPI1"})) == 0.5  # a gene counts once
    assert tf_share(["ACTB"], ["SPI1"]) == 0.0
    assert math.isnan(tf_share([], {"SPI1"}))


def test_gene_ranking_table_counts_the_tfs_of_each_top_list(tiny_atlas):
    from compute.query import RankingParams, gene_ranking

    plain = pd.DataFrame(gene_ranking_table(tiny_atlas, top=20, cell_min=1, min_cells=10))
    assert not any(c.startswith("TF ") for c in plain.columns)  # no list, no TF columns
    row = plain.iloc[0]
    ranks = {s: gene_ranking(tiny_atlas, RankingParams(cell_types=(row["term"],), store=s, cell_min=1)) for s in ("attr", "expr")}
    head_a, head_e = ranks["attr"].top(20), ranks["expr"].top(20)
    # a "TF list" made of 5 genes of the attribution top 20 that are not in the expression top 20,
    # and 2 genes of both: shares 7/20 and 2/20
    only_a = [g for g in head_a if g not in head_e][:5]
    both = [g for g in head_a if g in head_e][:2]
    assert len(only_a) == 5 and len(both) == 2
    table = pd.DataFrame(gene_ranking_table(tiny_atlas, top=20, cell_min=1, min_cells=10, tfs=frozenset(only_a + both)))
    got = table.set_index("term").loc[row["term"]]
    assert got["TF attribution"] == pytest.approx(7 / 20) and got["TF expression"] == pytest.approx(2 / 20)
    assert got["TF measured"] == 7 and got["genes measured"] == len(ranks["attr"].table.index)
    assert table["TF attribution"].between(0, 1).all() and table["TF expression"].between(0, 1).all()
