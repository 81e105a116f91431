"""An import-linter contract for the line between the two layers of every app (DESIGN.md):
modules under `APP.core` (and `mlcore`) import no web framework and no non-core module of the
project, so a trainer runs on a cluster with no database. Core modules may import other apps'
core modules and mlcore. Loaded by `lint-imports` (see [tool.importlinter] in pyproject.toml)."""
import grimp
from importlinter import Contract, ContractCheck, fields, output


class CoreIsolationContract(Contract):
    type_name = "core_isolation"

    project_packages = fields.ListField(subfield=fields.StringField())
    shared_core = fields.ListField(subfield=fields.StringField())
    forbidden_external = fields.ListField(subfield=fields.StringField())

    def _is_core(self, module: str) -> bool:
        parts = module.split(".")
        return "core" in parts[1:2] or parts[0] in self.shared_core

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        project = set(self.project_packages)
        external = set(self.forbidden_external)
        bad = []
        for importer in sorted(graph.modules):
            if importer.split(".")[0] not in project or not self._is_core(importer):
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                top = imported.split(".")[0]
                if top in external or (top in project and not self._is_core(imported)):
                    lines = graph.get_import_details(importer=importer, imported=imported)
                    bad.append((importer, imported, [d["line_number"] for d in lines]))
        return ContractCheck(kept=not bad, metadata={"bad": bad})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported, line_numbers in check.metadata["bad"]:
            where = ", ".join(f"l.{n}" for n in line_numbers)
            output.print_error(f"{importer} imports {imported} ({where})", bold=False)
            output.new_line()
