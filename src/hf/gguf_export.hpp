// What a Hugging Face model becomes in a GGUF file for llama.cpp, decided
// from the folder alone, before any weight is read:
//
//   tensors   names from the tensor-name table; the type each tensor gets for
//             the file type (1-D tensors and norms stay F32; Q8_0 and the
//             Q4_K_M mix as llama-quantize chooses them, with its fallbacks for
//             rows that do not fill a block); Llama's q/k rows in llama.cpp's
//             interleaved RoPE order (Qwen2's are not permuted)
//   metadata  general.* (name, file type, rvec provenance), the architecture's
//             hyperparameters from config.json, and the tokenizer (gpt2 BPE
//             from tokenizer.json, special ids and chat template from
//             tokenizer_config.json), as convert_hf_to_gguf.py writes them
//
// The differences from llama.cpp's own tools are listed in docs/gguf.md.
// Everything here reads files and returns values: thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hf/model_folder.hpp"
#include "io/gguf.hpp"
#include "io/writer.hpp"

namespace rvec {

enum class GgufFileType { kF32, kF16, kBF16, kQ8_0, kQ4_K_M };

// "f32", "f16", "bf16", "q8_0", "q4_k_m" (any case); nullopt otherwise.
std::optional<GgufFileType> parse_gguf_file_type(std::string_view text);
std::string_view gguf_file_type_name(GgufFileType type);  // "Q4_K_M"

struct GgufTensorChoice {
  std::string source;  // the Hugging Face tensor
  std::string name;    // its GGUF name
  DType dtype;         // its type in the file
  // Llama q/k: rows reordered within each of this many heads as llama.cpp's
  // converter does (gguf_source_row); 0 keeps the rows as they are.
  uint64_t interleave_heads = 0;
  // A tensor llama.cpp's converter makes rather than copies (Llama 3's
  // rope_freqs.weight): its F32 values, with `source` empty.
  std::vector<float> generated;
};

// The GGUF tensors of `model` in file order: llama-quantize's order (tensors
// outside the layers first, then layer by layer, each group by name). Fails
// (kUsage, naming the tensor or field) for an architecture other than Qwen2 or
// Llama, or for a tensor llama.cpp has no name for. A Llama with rope_scaling
// of type llama3 also gets rope_freqs.weight, generated (llama3_rope_factors).
std::vector<GgufTensorChoice> gguf_tensors(const ModelFolder& model, GgufFileType type);

// Llama 3's per-frequency RoPE divisors for config.json's rope_scaling (type
// llama3), as transformers' _compute_llama3_parameters and llama.cpp's
// converter compute them in f32: 1 for high frequencies, `factor` for low
// ones, a smooth blend between. Empty for any other rope_scaling.
std::vector<float> llama3_rope_factors(const ModelFolder& model);

// Row `row` of a tensor with interleaved heads of `head_rows` rows each comes
// from this row of the Hugging Face tensor: within a head, output rows
// 2j and 2j+1 are input rows j and j + head_rows/2.
uint64_t gguf_source_row(uint64_t row, uint64_t head_rows);

// Naming and provenance of one output.
struct GgufOrigin {
  std::string name;     // general.name
  Metadata provenance;  // "rvec.<key>" entries, written as general.rvec.<key>
};

// Every key of the file, in a fixed order. Fails (kUsage) when config.json
// lacks a field llama.cpp needs, and (kBadInput) when the tokenizer cannot be
// described to llama.cpp (an unknown pre-tokenizer, ids past the embedding).
// A folder without tokenizer.json gets a vocabulary of [PAD{i}] placeholders
// (pre-tokenizer "default", no merges): llama.cpp then runs it on token ids.
GgufMetadata gguf_metadata(const ModelFolder& model, GgufFileType type, const GgufOrigin& origin);

// The name a model goes by: its folder's name, or a single file's stem.
std::string gguf_model_name(const std::string& path);

// The rvec.* keys of a model's first shard plus the input names of its
// rvec_provenance.json (rvec.inputs.<role>), so that exporting a merged folder
// records what writing the merge as GGUF directly records.
Metadata gguf_provenance_of(const ModelFolder& model);

}  // namespace rvec
