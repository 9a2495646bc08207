"""Benchmark: import a synthetic Annuaire Santé extract of N rows.

Generates a ``PS_LibreAcces_Personne_activite``-shaped file (56 columns, trailing ``|``,
~1.3 rows per practitioner, valid Luhn RPPS numbers in a synthetic ``19xxxxxxxxx``
range that real RPPS numbers, all ``10…``, do not use, plus ~3 % ADELI rows), then
imports it into SQLite (and PostgreSQL with ``--postgres``) and prints rows/s,
duration and peak RSS. Re-importing (``--reimport``) measures the atomic replacement.

    .venv/bin/python bench/extract_import.py --rows 2000000 --reimport \
        --postgres postgres://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import resource
import secrets
import tempfile
import time
from pathlib import Path

import asyncpg
from mautrix.util.async_db import Database

from bridge.db import build_upgrade_table
from bridge.identity.identifiers import luhn_key
from bridge.identity.sources.extract import ExtractDirectory, ImportReport, import_extract

HEADER = (
    "Type d'identifiant PP|Identifiant PP|Identification nationale PP|Code civilité d'exercice|"
    "Libellé civilité d'exercice|Code civilité|Libellé civilité|Nom d'exercice|Prénom d'exercice|"
    "Code profession|Libellé profession|Code catégorie professionnelle|"
    "Libellé catégorie professionnelle|Code type savoir-faire|Libellé type savoir-faire|"
    "Code savoir-faire|Libellé savoir-faire|Code mode exercice|Libellé mode exercice|"
    "Numéro SIRET site|Numéro SIREN site|Numéro FINESS site|"
    "Numéro FINESS établissement juridique|Identifiant technique de la structure|"
    "Raison sociale site|Enseigne commerciale site|"
    "Complément destinataire (coord. structure)|"
    "Complément point géographique (coord. structure)|Numéro Voie (coord. structure)|"
    "Indice répétition voie (coord. structure)|Code type de voie (coord. structure)|"
    "Libellé type de voie (coord. structure)|Libellé Voie (coord. structure)|"
    "Mention distribution (coord. structure)|Bureau cedex (coord. structure)|"
    "Code postal (coord. structure)|Code commune (coord. structure)|"
    "Libellé commune (coord. structure)|Code pays (coord. structure)|"
    "Libellé pays (coord. structure)|Téléphone (coord. structure)|"
    "Téléphone 2 (coord. structure)|Télécopie (coord. structure)|"
    "Adresse e-mail (coord. structure)|Code Département (structure)|"
    "Libellé Département (structure)|Ancien identifiant de la structure|"
    "Autorité d'enregistrement|Code secteur d'activité|Libellé secteur d'activité|"
    "Code section tableau pharmaciens|Libellé section tableau pharmaciens|Code rôle|"
    "Libellé rôle|Code genre activité|Libellé genre activité|"
)
LAST = (
    "MARTIN BERNARD THOMAS PETIT ROBERT RICHARD DURAND DUBOIS MOREAU LAURENT SIMON MICHEL "
    "LEFEBVRE LEROY ROUX DAVID BERTRAND MOREL FOURNIER GIRARD BONNET DUPONT LAMBERT FONTAINE "
    "ROUSSEAU VINCENT MULLER LEFEVRE FAURE ANDRE MERCIER BLANC GUERIN BOYER GARNIER CHEVALIER "
    "FRANCOIS LEGRAND GAUTHIER GARCIA PERRIN ROBIN CLEMENT MORIN NICOLAS HENRY ROUSSEL MATHIEU"
).split()
FIRST = (
    "Jean Marie Pierre Anne Michel Nathalie Philippe Isabelle Alain Sylvie Nicolas Catherine "
    "Christophe Françoise Stéphane Valérie Éric Sandrine Laurent Céline Julien Émilie Hélène "
    "Jérôme Aurélie Thomas Léa Chloé Inès Zoé Rémi Anaïs Loïc Noémie Gaël Maëlle"
).split()
PROFESSIONS = (
    ("10", "Médecin", "CNOM/CNOM/CNOM"),
    ("21", "Pharmacien", "CNOP/CNOP/CNOP"),
    ("40", "Chirurgien-Dentiste", "CNOCD/CNOCD/CNOCD"),
    ("50", "Sage-Femme", "CNOSF/CNOSF/CNOSF"),
    ("60", "Infirmier", "CNOI/CNOI/CNOI"),
    ("60", "Infirmier", "CNOI/CNOI/CNOI"),
    ("70", "Masseur-Kinésithérapeute", "CNOMK/CNOMK/CNOMK"),
    ("91", "Orthophoniste", "ARS/ARS/ARS"),
)
CITIES = (
    ("33000", "33063", "Bordeaux", "33", "Gironde"),
    ("44000", "44109", "Nantes", "44", "Loire-Atlantique"),
    ("75015", "75115", "Paris 15e Arrondissement", "75", "Paris"),
    ("69003", "69383", "Lyon 3e Arrondissement", "69", "Rhône"),
    ("59000", "59350", "Lille", "59", "Nord"),
    ("31000", "31555", "Toulouse", "31", "Haute-Garonne"),
    ("67000", "67482", "Strasbourg", "67", "Bas-Rhin"),
    ("13006", "13206", "Marseille 6e Arrondissement", "13", "Bouches-du-Rhône"),
    ("35000", "35238", "Rennes", "35", "Ille-et-Vilaine"),
)


def generate(path: Path, rows: int, seed: int = 1) -> int:
    """Write a synthetic extract of ``rows`` data lines; return the number of people."""
    rnd = random.Random(seed)
    people = 0
    written = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\n")
        buf: list[str] = []
        while written < rows:
            people += 1
            if rnd.random() < 0.03:
                ident = f"00{people % 1_000_000:06d}"
                ident += luhn_key(ident)
                id_type = "0"
            else:
                ident = f"19{people:08d}"
                ident += luhn_key(ident)
                id_type = "8"
            last, first = rnd.choice(LAST), rnd.choice(FIRST)
            code, label, authority = rnd.choice(PROFESSIONS)
            doctor = code in ("10", "21", "40")
            civ = ("DR|Docteur|", "M|Monsieur") if doctor else ("|", "M|Monsieur")
            r = rnd.random()
            n_rows = 1 if r < 0.75 else 2 if r < 0.95 else 3
            for _ in range(min(n_rows, rows - written)):
                pc, commune, city, dep, dep_label = rnd.choice(CITIES)
                siret = f"9{rnd.randrange(10**13):013d}"
                buf.append(
                    f"{id_type}|{ident}|{id_type}{ident}|{civ[0]}{civ[1]}|{last}|{first}|"
                    f"{code}|{label}|C|Civil|S|Spécialité ordinale|SM54|Médecine Générale|"
                    f"L|Libéral|{siret}|{siret[:9]}|||C{siret}|CABINET {last} {first}||"
                    f"CABINET {last}||{rnd.randrange(1, 200)}||R|Rue|DES EXEMPLES||"
                    f"{pc} {city.upper()}|{pc}|{commune}|{city}|||0{rnd.randrange(10**9):09d}||||"
                    f"{dep}|{dep_label}|3{siret}|{authority}|SA07|Cabinet individuel|||||"
                    "GENR01|Activité de soin et de pharmacie|"
                )
                written += 1
            if len(buf) >= 10_000:
                out.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            out.write("\n".join(buf) + "\n")
    return people


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def run_import(label: str, uri: str, path: Path, args: argparse.Namespace) -> None:
    db = Database.create(uri, upgrade_table=build_upgrade_table())
    await db.start()
    try:
        rounds = 2 if args.reimport else 1
        for i in range(rounds):
            report: ImportReport = await import_extract(db, path, batch_size=args.batch_size)
            print(
                f"{label} import #{i + 1}: {report.rows_read:,} rows, "
                f"{report.practitioners:,} practitioners, {report.rows_rejected} rejected, "
                f"{report.duration_s:.1f} s, {report.rows_read / report.duration_s:,.0f} rows/s, "
                f"peak RSS so far {peak_rss_mb():.0f} MB",
                flush=True,
            )
        directory = ExtractDirectory(db)
        t0 = time.perf_counter()
        n = 200
        for k in range(n):
            ident = f"19{(k * 7919) % 1000 + 1:08d}"
            await directory.lookup(ident + luhn_key(ident))
        t1 = time.perf_counter()
        for k in range(n):
            await directory.search(LAST[k % len(LAST)][:4], None, "paris", 20)
        t2 = time.perf_counter()
        print(
            f"{label} lookup {1000 * (t1 - t0) / n:.2f} ms, "
            f"search(name prefix + city, limit 20) {1000 * (t2 - t1) / n:.2f} ms (mean of {n})",
            flush=True,
        )
    finally:
        await db.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--file", type=Path, help="reuse/write the extract here")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--reimport", action="store_true", help="import twice (replacement)")
    parser.add_argument("--postgres", metavar="DSN", help="admin DSN; a throwaway DB is made")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        path = args.file or Path(tmp) / "PS_LibreAcces_Personne_activite_bench.txt"
        if not path.exists():
            t0 = time.perf_counter()
            people = generate(path, args.rows)
            print(
                f"generated {args.rows:,} rows / {people:,} people, "
                f"{path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        print(f"peak RSS before import {peak_rss_mb():.0f} MB", flush=True)
        if not args.no_sqlite:
            await run_import("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", path, args)
        if args.postgres:
            base, _, _ = args.postgres.rpartition("/")
            name = f"sg_bench_{os.getpid()}_{secrets.token_hex(3)}"
            admin = await asyncpg.connect(args.postgres)
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                await run_import("postgres", f"{base}/{name}", path, args)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
