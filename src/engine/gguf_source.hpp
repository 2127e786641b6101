// The GGUF side of ModelSource (model_source.hpp): a single GGUF v3 file as
// rvec export-gguf or llama.cpp's converter writes it, architecture qwen2 or
// llama. What it accepts and refuses is listed in docs/gguf.md ("Running a
// GGUF file"); this header exposes the one piece of arithmetic worth testing
// on its own.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace rvec {

// Llama's q/k rows back in Hugging Face order: llama.cpp's converter stored
// HF row gguf_source_row(r, head_rows) (hf/gguf_export.hpp) as row r, so
// row r of `gguf_rows` goes back to that row. `gguf_rows` holds whole rows of
// `row_bytes` bytes, a whole number of heads of `head_rows` rows each.
std::vector<std::byte> rows_in_hf_order(std::span<const std::byte> gguf_rows, size_t row_bytes, size_t head_rows);

}  // namespace rvec
