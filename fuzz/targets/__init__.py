"""One harness per fuzz target: ``TestOneInput(data: bytes) -> None`` plus the imports of the
package under test inside ``atheris.instrument_imports()`` so that libFuzzer sees its branches.

Each harness catches exactly the error types the code under test documents for bad input;
any other exception escapes to atheris, which saves the input and stops (a finding).
"""
