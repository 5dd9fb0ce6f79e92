"""``nbgrader export --exporter=autograder.lms.LMSExport --to lms.csv``: one row per student.

nbgrader's own CSV has a row per (assignment, student). Canvas and Moodle import a grade sheet
with one row per student and one column per assignment: this plugin writes that, with the
columns both recognise to match students (Canvas: ``SIS Login ID``; Moodle: map ``Email`` or
``SIS Login ID`` to the username when importing). Scores are after late penalties; a missing
submission is an empty cell, not a zero, so the LMS can tell "not handed in" from "scored 0".
"""

from __future__ import annotations

import csv

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin


def _name(student) -> str:
    full = ", ".join(part for part in (student.last_name, student.first_name) if part)
    return full or student.id


class LMSExport(ExportPlugin):
    """A wide grade sheet for Canvas or Moodle: Student, SIS Login ID, Email, one column per assignment."""

    def export(self, gradebook: Gradebook) -> None:
        assignments = [a for a in gradebook.assignments if not self.assignment or a.name in self.assignment]
        students = [s for s in gradebook.students if not self.student or s.id in self.student]
        columns = ["Student", "SIS Login ID", "Email"] + [f"{a.name} ({a.max_score:g} pts)" for a in assignments]
        with open(self.to or "lms.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for student in students:
                row = [_name(student), student.id, student.email or ""]
                for assignment in assignments:
                    try:
                        submission = gradebook.find_submission(assignment.name, student.id)
                    except MissingEntry:
                        row.append("")
                        continue
                    row.append(f"{max(0.0, submission.score - submission.late_submission_penalty):g}")
                writer.writerow(row)
        self.log.info("Wrote one row per student for %d assignments to %s", len(assignments), self.to or "lms.csv")
