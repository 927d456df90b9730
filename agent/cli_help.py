"""How ``nanofactory COMMAND --help`` reads: descriptions wrapped to the terminal, examples line for line."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.HelpFormatter):
    """A one-line description is wrapped to the terminal's width; a text of several lines (an examples
    epilog, a file format) keeps its lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


EXAMPLES = {
    "build": ['nanofactory build "a pet-door camera that tells apart cats, dogs and everything else on an nRF52840" \\',
              "    --images ~/pet-door-shots --examples ~/pet-door-examples",
              "nanofactory build --spec fruit.yaml --search      # a spec file (`nanofactory spec ... --save`)",
              "nanofactory build --resume RUN_ID                 # continue a run stopped or interrupted"],
    "demo": ["nanofactory demo",
             "nanofactory demo --search      # with the architecture search"],
    "spec": ['nanofactory spec "sorts apples, bananas and everything else on an ESP32-S3" --save fruit.yaml'],
    "chat": ["nanofactory chat                                  # the web page",
             'nanofactory chat --terminal "a pet-door camera for cats and dogs" --images ~/pet-door-shots'],
    "run": ["nanofactory run runs/RUN_ID/design.json      # the same build again, no LLM"],
    "compile": ["nanofactory compile RUN_ID",
                "nanofactory compile --onnx model.onnx --calibration inputs.npy --out build/"],
    "verify": ["nanofactory verify RUN_ID",
               "nanofactory verify RUN_ID --samples all --sanitize"],
    "runs": ["nanofactory runs",
             "nanofactory runs show RUN_ID",
             "nanofactory runs compare RUN_A RUN_B      # after `nanofactory review RUN_A --retrain`",
             "nanofactory runs remove RUN_ID --yes"],
}


def finish(commands: dict[str, argparse.ArgumentParser]) -> None:
    """Every command gets this formatter, and examples where its parser gave none."""
    for name, command in commands.items():
        command.formatter_class = HelpFormatter
        if command.epilog is None and name in EXAMPLES:
            command.epilog = "examples:\n" + "".join(f"  {line}\n" for line in EXAMPLES[name])
