#include "hf/tensor_reader.hpp"

#include "numeric/codec.hpp"

namespace rvec {
namespace {

uint64_t bytes_of(DType dtype, uint64_t elements) { return elements * dtype_bits(dtype) / 8; }

}  // namespace

TensorBlockReader::TensorBlockReader(size_t block_elements)
    : block_elements_(block_elements), raw_(hwy::AllocateAligned<std::byte>(block_elements * 4)) {}

void TensorBlockReader::read_into(const ModelTensor& tensor, uint64_t first, size_t n, std::byte* out) {
  const DType dtype = tensor.info->dtype;
  tensor.file->prefetch(*tensor.info, bytes_of(dtype, first + n), bytes_of(dtype, block_elements_));
  tensor.file->read(*tensor.info, bytes_of(dtype, first), std::span(out, bytes_of(dtype, n)));
  bytes_read_ += bytes_of(dtype, n);
}

std::span<const std::byte> TensorBlockReader::read(const ModelTensor& tensor, uint64_t first, size_t n) {
  read_into(tensor, first, n, raw_.get());
  last_ = &tensor;
  last_block_ = {raw_.get(), bytes_of(tensor.info->dtype, n)};
  return last_block_;
}

void TensorBlockReader::widen(size_t offset, std::span<float> out) const {
  const DType dtype = last_->info->dtype;
  decode_to_f32(dtype, raw_.get() + bytes_of(dtype, offset), out);
}

float* TensorBlockReader::read_f32(const ModelTensor& tensor, uint64_t first, size_t n) {
  if (!values_) values_ = hwy::AllocateAligned<float>(block_elements_);
  read(tensor, first, n);
  widen(0, std::span(values_.get(), n));
  return values_.get();
}

}  // namespace rvec
