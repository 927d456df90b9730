"""The web page's review: the queue of pool images a person labels, and a retrain on their answers.

The queue and the answers file are agent.review's, shared with the terminal's `nanofactory
review`; a retrain is its ``--retrain``, run in the session's background thread and followed by
the page like a build (the Stop button stops it the same way).
"""

from __future__ import annotations

import threading
import time

from agent import app_views, review
from agent.web_chat import BUSY
from knowledge.errors import NanofactoryError


class ReviewMixin:
    """WebSession's review and retrain; the session's chat, lock, worker and run bookkeeping are its own."""

    def start_review(self) -> app_views.ReviewItem | None:
        folder = self.run_dir()
        self.review = app_views.review_queue(folder, app_views.REVIEW_LIMIT) if folder else []
        self._review_seen, self._review_answers = [], 0
        self._review_run = folder.name if folder is not None and self.review else None
        return self.review[0] if self.review else None

    def current_review(self) -> app_views.ReviewItem | None:
        """The review's next sample: the queue kept while it belongs to the run shown (a stage finishing
        mid-review must not hand back the samples skipped), started afresh for any other run."""
        folder = self.run_dir()
        if folder is not None and folder.name == self._review_run:
            return self.review[0] if self.review else None
        return self.start_review()

    def label(self, label: str | None, shown: str | None = None) -> str:
        """Store the person's label for the first queued sample (None skips it); a line for the page.
        ``shown``: the sample the page showed; a click that arrives after it was answered is refused."""
        folder = self.run_dir()
        if not self.review or folder is None:
            return "Nothing to review."
        if shown is not None and self.review[0].uid != shown:
            return f"{shown} was answered already; this is the next one."
        item = self.review.pop(0)
        self._review_seen.append(item.index)
        if label is None:
            line = f"Skipped {item.uid}."
        else:
            count = review.save_human_label(folder, item, label)
            self._review_answers += 1
            given = review.load_human_labels(folder)
            checks = "; ".join(filter(None, (review.spot_check_line(given), review.weakest_class_line(given))))
            line = (f"Saved '{label}' for {item.uid}: {count} human label{'s' if count != 1 else ''} in "
                    f"{review.HUMAN_LABELS}{f'; {checks}' if checks else ''}. "
                    "**Retrain on my answers** trains a new run on them.")
        if not self.review and self._review_answers:  # a round is done: the next one learns from its answers
            self.review = app_views.review_queue(folder, app_views.REVIEW_LIMIT, skip=self._review_seen, fresh=True)
            if self.review:
                line += f" The next {len(self.review)} were picked with the {self._review_answers} answers of this round."
            self._review_answers = 0
        return line

    def retrain(self) -> bool:
        """Train a new run on the answers given for the run shown, as `nanofactory review RUN --retrain` does,
        in the background; the page follows it like a build. False, with a line in the chat, when it cannot start."""
        with self._lock:
            if self.busy:
                self._post({"role": "assistant", "content": BUSY.format(what="Press Retrain")})
                return False
            folder = self.run_dir()
            n = len(review.load_human_labels(folder)) if folder is not None else 0
            if not n:
                self._post({"role": "assistant", "content": (
                    f"There are no answers for {folder.name} yet: label some images in the review queue first, then "
                    "retrain." if folder is not None else "Open a run first (Past runs), answer its review queue, "
                    "then retrain.")})
                return False
            try:
                run = review.retrain_run(folder, self.app.store())
            except NanofactoryError as e:
                self._post({"role": "assistant", "content": f"⚠ {e}"})
                return False
            self._add_run(run.id)
            self.building, self._build_started = run.id, time.time()
            self._post({"role": "assistant", "content": f"Retraining {folder.name} on your {n} answer"
                        f"{'s' if n != 1 else ''} as run **{run.id}**: follow the stages on the right."})
            self._worker = threading.Thread(target=self._retrain, args=(folder.name, run), daemon=True,
                                            name=f"nanofactory-web-retrain-{self.id}")
            self._worker.start()
        return True

    def _retrain(self, parent_id: str, run) -> None:
        from agent.graph import summary
        from agent.metrics import review_hint, weakest_class
        from agent.pipeline import execute

        store = self.app.store()
        try:
            metrics = execute(run, store, None, show_bars=False)
            shown = {**metrics, "weakest_class": weakest_class(metrics.get("per_class")),
                     "next": review_hint(metrics, run.id, on_page=True), "report": str(run.dir / "report.html")}
            first, *rest = summary({"run_id": run.id, "metrics": shown}, on_page=True).split("\n")
            changed = review.retrain_lines(parent_id, store.metrics(parent_id), metrics, bold=True)
            self._post({"role": "assistant", "content": "\n".join([first, *changed, *rest])})  # what moved, first
        except KeyboardInterrupt:
            if not self._stopping:
                raise
            self._stopped(run.id)  # execute marked the run interrupted
        except Exception as e:
            self._say_error(e, "retrain")
        finally:
            self._ended()
