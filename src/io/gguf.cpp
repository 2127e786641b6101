#include "io/gguf.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <set>

#include "base/error.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"

namespace rvec {
namespace {

constexpr std::array<GgmlType, 38> kGgmlTypes = {{
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
    {40, "NVFP4", 64, 36},    {41, "Q1_0", 128, 18},    {42, "Q2_0", 64, 18},
}};

// Bounds a strict reader applies (far above any real model, far below what
// would exhaust memory).
constexpr uint64_t kMaxTensors = 1'000'000;
constexpr uint64_t kMaxKeys = 100'000;
constexpr uint64_t kMaxKeyBytes = 65'535;
constexpr uint64_t kMaxStringBytes = 1ull << 30;  // ggml's GGUF_MAX_STRING_LENGTH
constexpr uint64_t kMaxArrayItems = 1ull << 30;   // ggml's GGUF_MAX_ARRAY_ELEMENTS
constexpr uint64_t kMaxTensorNameBytes = 63;      // ggml's GGML_MAX_NAME - 1
constexpr uint32_t kMaxDims = 4;                  // GGML_MAX_DIMS
constexpr uint64_t kMaxAlignment = 1ull << 20;

// Smallest encoded size of one value of a type (a string is its 8-byte length).
uint64_t min_value_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kBool: return 1;
    case GgufValueType::kU16: case GgufValueType::kI16: return 2;
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kF32: return 4;
    case GgufValueType::kString: case GgufValueType::kU64: case GgufValueType::kI64: case GgufValueType::kF64: return 8;
    case GgufValueType::kArray: return 12;
  }
  return 1;
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::kF64); }

// Sequential reads through a ByteSource with a small buffer; every read is
// checked against the end of the file first.
class Cursor {
 public:
  Cursor(const ByteSource& read, uint64_t file_size, std::string_view origin)
      : read_(read), size_(file_size), origin_(origin) {}

  uint64_t position() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  std::string_view origin() const { return origin_; }

  template <typename... Args>
  [[noreturn]] void fail_at(fmt::format_string<Args...> format, Args&&... args) const {
    bad_input("{}: invalid GGUF file ({}, at byte {})", origin_, fmt::format(format, std::forward<Args>(args)...), pos_);
  }

  void bytes(std::byte* out, uint64_t n, std::string_view what) {
    if (n > remaining()) fail_at("{} runs past the end of the {}-byte file", what, size_);
    while (n > 0) {
      if (buffer_pos_ >= buffer_.size()) fill();
      const uint64_t take = std::min<uint64_t>(n, buffer_.size() - buffer_pos_);
      std::memcpy(out, buffer_.data() + buffer_pos_, take);
      buffer_pos_ += take;
      pos_ += take;
      out += take;
      n -= take;
    }
  }

  template <typename T>
  T value(std::string_view what) {
    std::byte raw[sizeof(T)];
    bytes(raw, sizeof(T), what);
    T v;
    std::memcpy(&v, raw, sizeof(T));
    return v;
  }

  std::string string(uint64_t max_bytes, std::string_view what) {
    const auto length = value<uint64_t>(what);
    if (length > max_bytes) fail_at("{} is {} bytes long, more than the {}-byte limit", what, length, max_bytes);
    if (length > remaining()) fail_at("{} ({} bytes) runs past the end of the file", what, length);
    std::string s(length, '\0');
    bytes(reinterpret_cast<std::byte*>(s.data()), length, what);
    return s;
  }

 private:
  void fill() {
    buffer_.resize(std::min<uint64_t>(kChunk, remaining()));
    read_(pos_, buffer_);
    buffer_pos_ = 0;
  }

  static constexpr uint64_t kChunk = 1 << 20;
  const ByteSource& read_;
  uint64_t size_;
  std::string_view origin_;
  uint64_t pos_ = 0;
  std::vector<std::byte> buffer_;
  size_t buffer_pos_ = 0;
};

GgufScalar read_scalar(Cursor& c, GgufValueType type, std::string_view what) {
  switch (type) {
    case GgufValueType::kU8: return c.value<uint8_t>(what);
    case GgufValueType::kI8: return c.value<int8_t>(what);
    case GgufValueType::kU16: return c.value<uint16_t>(what);
    case GgufValueType::kI16: return c.value<int16_t>(what);
    case GgufValueType::kU32: return c.value<uint32_t>(what);
    case GgufValueType::kI32: return c.value<int32_t>(what);
    case GgufValueType::kF32: return c.value<float>(what);
    case GgufValueType::kBool: {
      const auto b = c.value<uint8_t>(what);
      if (b > 1) c.fail_at("{} is a bool with value {}, not 0 or 1", what, b);
      return b == 1;
    }
    case GgufValueType::kString: return c.string(kMaxStringBytes, what);
    case GgufValueType::kU64: return c.value<uint64_t>(what);
    case GgufValueType::kI64: return c.value<int64_t>(what);
    case GgufValueType::kF64: return c.value<double>(what);
    case GgufValueType::kArray: break;
  }
  c.fail_at("{} has a nested array", what);
}

GgufValue read_value(Cursor& c, const std::string& key) {
  const std::string what = fmt::format("the value of \"{}\"", printable(key));
  const auto raw_type = c.value<uint32_t>(what);
  if (!known_value_type(raw_type)) c.fail_at("{} has unknown type {}", what, raw_type);
  GgufValue v;
  v.type = static_cast<GgufValueType>(raw_type);
  if (!v.is_array()) {
    v.items.push_back(read_scalar(c, v.type, what));
    return v;
  }
  const auto element = c.value<uint32_t>(what);
  if (!known_value_type(element)) c.fail_at("{} is an array of unknown type {}", what, element);
  v.element_type = static_cast<GgufValueType>(element);
  if (v.element_type == GgufValueType::kArray) c.fail_at("{} is an array of arrays (not supported, as in ggml)", what);
  const auto count = c.value<uint64_t>(what);
  if (count > kMaxArrayItems) c.fail_at("{} has {} items, more than the limit of {}", what, count, kMaxArrayItems);
  if (count > c.remaining() / min_value_bytes(v.element_type)) {
    c.fail_at("{} has {} items, more than the rest of the file can hold", what, count);
  }
  v.items.reserve(count);
  for (uint64_t i = 0; i < count; ++i) v.items.push_back(read_scalar(c, v.element_type, what));
  return v;
}

void read_metadata(Cursor& c, uint64_t count, GgufFile& file) {
  std::set<std::string, std::less<>> seen;
  for (uint64_t i = 0; i < count; ++i) {
    std::string key = c.string(kMaxKeyBytes, fmt::format("key {}", i));
    if (key.empty()) c.fail_at("key {} is empty", i);
    if (first_invalid_utf8(key) || has_control_character(key)) c.fail_at("key {} (\"{}\") is not printable UTF-8", i, printable(key));
    if (!seen.insert(key).second) c.fail_at("key \"{}\" appears twice", key);
    GgufValue value = read_value(c, key);
    file.metadata.push_back({std::move(key), std::move(value)});
  }
}

uint64_t read_alignment(const Cursor& c, const GgufMetadata& metadata) {
  const GgufValue* v = find_key(metadata, "general.alignment");
  if (v == nullptr) return kGgufAlignment;
  if (v->type != GgufValueType::kU32) c.fail_at("general.alignment has type {}, not u32", gguf_value_type_name(v->type));
  const uint64_t a = std::get<uint32_t>(v->items.front());
  if (a == 0 || (a & (a - 1)) != 0 || a > kMaxAlignment) {
    c.fail_at("general.alignment {} is not a power of two up to {}", a, kMaxAlignment);
  }
  return a;
}

// Elements and bytes of a tensor, refusing overflow and partial blocks.
void size_tensor(const Cursor& c, GgufTensorInfo& t) {
  const GgmlType* type = find_ggml_type(t.type);
  if (type == nullptr) c.fail_at("tensor \"{}\" has unknown ggml type {}", printable(t.name), t.type);
  uint64_t elements = 1;
  for (uint64_t d : t.ne) {
    if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(elements, d, &elements) ||
        elements > static_cast<uint64_t>(INT64_MAX)) {
      c.fail_at("tensor \"{}\" has a shape whose element count overflows", printable(t.name));
    }
  }
  if (t.ne.front() % type->block_elements != 0) {
    c.fail_at("tensor \"{}\" has rows of {} elements, not a multiple of the {}-element {} block", printable(t.name),
              t.ne.front(), type->block_elements, type->name);
  }
  if (__builtin_mul_overflow(elements / type->block_elements, uint64_t{type->block_bytes}, &t.bytes)) {
    c.fail_at("tensor \"{}\" is too large: its byte size overflows", printable(t.name));
  }
}

GgufTensorInfo read_tensor_info(Cursor& c, uint64_t index) {
  GgufTensorInfo t;
  t.name = c.string(kMaxStringBytes, fmt::format("the name of tensor {}", index));
  if (t.name.empty()) c.fail_at("tensor {} has an empty name", index);
  if (t.name.size() > kMaxTensorNameBytes) {
    c.fail_at("tensor name \"{}\" is {} bytes, longer than ggml's {}", printable(t.name), t.name.size(), kMaxTensorNameBytes);
  }
  if (first_invalid_utf8(t.name) || has_control_character(t.name)) c.fail_at("tensor name \"{}\" is not printable UTF-8", printable(t.name));
  const auto dims = c.value<uint32_t>("a tensor's dimension count");
  if (dims == 0 || dims > kMaxDims) c.fail_at("tensor \"{}\" has {} dimensions, not 1 to {}", printable(t.name), dims, kMaxDims);
  for (uint32_t j = 0; j < dims; ++j) t.ne.push_back(c.value<uint64_t>("a tensor dimension"));
  t.type = c.value<uint32_t>("a tensor type");
  t.offset = c.value<uint64_t>("a tensor offset");
  size_tensor(c, t);
  return t;
}

// Offsets aligned, every tensor inside the data section, no two overlapping.
void check_data_ranges(const Cursor& c, GgufFile& file, uint64_t file_size) {
  const uint64_t data_bytes = file_size - file.data_start;
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& t : file.tensors) {
    if (t.offset % file.alignment != 0) {
      c.fail_at("tensor \"{}\" starts at data offset {}, not a multiple of the alignment {}", printable(t.name), t.offset,
                file.alignment);
    }
    if (t.offset > data_bytes || t.bytes > data_bytes - t.offset) {
      c.fail_at("tensor \"{}\" ({} bytes at data offset {}) runs past the end of the file (truncated?)", printable(t.name),
                t.bytes, t.offset);
    }
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    if (prev.bytes > 0 && by_offset[i]->offset < prev.offset + prev.bytes) {
      c.fail_at("tensors \"{}\" and \"{}\" overlap", printable(prev.name), printable(by_offset[i]->name));
    }
  }
}

std::string pad_to(std::string bytes, uint64_t alignment) {
  bytes.append(gguf_padding(bytes.size(), alignment), '\0');
  return bytes;
}

// Little-endian serialisation of header fields.
class HeaderWriter {
 public:
  template <typename T>
  void put(T v) {
    char raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    out_.append(raw, sizeof(T));
  }
  void string(const std::string& s) {
    put<uint64_t>(s.size());
    out_ += s;
  }
  void scalar(const GgufScalar& v) {
    std::visit(
        [this](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            string(x);
          } else if constexpr (std::is_same_v<T, bool>) {
            put<uint8_t>(x ? 1 : 0);
          } else {
            put<T>(x);
          }
        },
        v);
  }
  void value(const GgufValue& v) {
    put<uint32_t>(static_cast<uint32_t>(v.type));
    if (!v.is_array()) {
      scalar(v.items.front());
      return;
    }
    put<uint32_t>(static_cast<uint32_t>(v.element_type));
    put<uint64_t>(v.items.size());
    for (const auto& item : v.items) scalar(item);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string_view gguf_value_type_name(GgufValueType type) {
  static constexpr std::array<std::string_view, 13> kNames = {"u8",     "i8",    "u16", "i16", "u32", "i32", "f32",
                                                              "bool",   "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(type);
  return i < kNames.size() ? kNames[i] : "unknown";
}

GgufValue GgufValue::u16(uint16_t v) { return {GgufValueType::kU16, GgufValueType::kU32, {v}}; }
GgufValue GgufValue::u32(uint32_t v) { return {GgufValueType::kU32, GgufValueType::kU32, {v}}; }
GgufValue GgufValue::i32(int32_t v) { return {GgufValueType::kI32, GgufValueType::kU32, {v}}; }
GgufValue GgufValue::f32(float v) { return {GgufValueType::kF32, GgufValueType::kU32, {v}}; }
GgufValue GgufValue::boolean(bool v) { return {GgufValueType::kBool, GgufValueType::kU32, {v}}; }
GgufValue GgufValue::string(std::string v) { return {GgufValueType::kString, GgufValueType::kU32, {std::move(v)}}; }

GgufValue GgufValue::strings(std::vector<std::string> v) {
  GgufValue out{GgufValueType::kArray, GgufValueType::kString, {}};
  out.items.reserve(v.size());
  for (auto& s : v) out.items.emplace_back(std::move(s));
  return out;
}

GgufValue GgufValue::i32s(const std::vector<int32_t>& v) {
  GgufValue out{GgufValueType::kArray, GgufValueType::kI32, {}};
  out.items.reserve(v.size());
  for (int32_t x : v) out.items.emplace_back(x);
  return out;
}

std::string GgufValue::describe() const {
  if (is_array()) return fmt::format("[{} {} items]", items.size(), gguf_value_type_name(element_type));
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return x;
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>) {
          return std::to_string(static_cast<int>(x));
        } else {
          return fmt::format("{}", x);
        }
      },
      items.front());
}

const GgufValue* find_key(const GgufMetadata& metadata, std::string_view key) {
  for (const auto& kv : metadata) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

const GgmlType* find_ggml_type(uint32_t id) {
  for (const auto& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

const GgmlType& ggml_type_of(DType dtype) {
  static const std::pair<DType, uint32_t> kIds[] = {
      {DType::kF32, 0},   {DType::kF16, 1},   {DType::kQ5_0, 6}, {DType::kQ8_0, 8}, {DType::kQ4_K, 12},
      {DType::kQ6_K, 14}, {DType::kBF16, 30}, {DType::kI8, 24},  {DType::kI16, 25}, {DType::kI32, 26},
      {DType::kI64, 27},  {DType::kF64, 28},
  };
  for (const auto& [d, id] : kIds) {
    if (d == dtype) return *find_ggml_type(id);
  }
  fail(ErrorKind::kUsage, "{} tensors cannot be stored in a GGUF file", dtype_name(dtype));
}

GgufFile parse_gguf(const ByteSource& read, uint64_t file_size, std::string_view origin) {
  Cursor c(read, file_size, origin);
  if (file_size < 24) bad_input("{}: not a GGUF file (only {} bytes)", origin, file_size);
  std::byte magic[4];
  c.bytes(magic, 4, "the magic");
  if (std::memcmp(magic, "GGUF", 4) != 0) bad_input("{}: not a GGUF file (no \"GGUF\" magic)", origin);
  GgufFile file;
  file.version = c.value<uint32_t>("the version");
  if (file.version != 2 && file.version != 3) c.fail_at("version {} is not supported (2 or 3)", file.version);
  const auto tensors = c.value<uint64_t>("the tensor count");
  const auto keys = c.value<uint64_t>("the key count");
  if (tensors > kMaxTensors) c.fail_at("{} tensors, more than the limit of {}", tensors, kMaxTensors);
  if (keys > kMaxKeys) c.fail_at("{} keys, more than the limit of {}", keys, kMaxKeys);
  read_metadata(c, keys, file);
  file.alignment = read_alignment(c, file.metadata);
  std::set<std::string, std::less<>> names;
  for (uint64_t i = 0; i < tensors; ++i) {
    GgufTensorInfo t = read_tensor_info(c, i);
    if (!names.insert(t.name).second) c.fail_at("tensor name \"{}\" appears twice", printable(t.name));
    file.tensors.push_back(std::move(t));
  }
  // As in ggml, the data section is aligned only when there is one.
  const uint64_t padding = tensors == 0 ? 0 : gguf_padding(c.position(), file.alignment);
  if (padding > c.remaining()) c.fail_at("the padding before the data section runs past the end of the file");
  file.data_start = c.position() + padding;
  check_data_ranges(c, file, file_size);
  return file;
}

GgufFile parse_gguf_buffer(std::span<const std::byte> file, std::string_view origin) {
  return parse_gguf([&](uint64_t offset, std::span<std::byte> out) { std::memcpy(out.data(), file.data() + offset, out.size()); },
                    file.size(), origin);
}

GgufFile read_gguf_file(const std::string& path) {
  const FileDescriptor fd = open_regular_file(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_errno(fmt::format("{}: cannot stat", path));
  return parse_gguf([&](uint64_t offset, std::span<std::byte> out) { read_exactly_at(fd.get(), out, offset, path); },
                    static_cast<uint64_t>(st.st_size), path);
}

bool is_gguf_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  char magic[4] = {};
  const bool gguf = ::pread(fd, magic, 4, 0) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  ::close(fd);
  return gguf;
}

uint64_t gguf_padding(uint64_t bytes, uint64_t alignment) { return (alignment - bytes % alignment) % alignment; }

std::vector<GgufTensorInfo> gguf_tensor_infos(const std::vector<GgufTensorSpec>& tensors, uint64_t alignment) {
  std::vector<GgufTensorInfo> infos;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    GgufTensorInfo info{t.name, {t.shape.rbegin(), t.shape.rend()}, ggml_type_of(t.dtype).id, offset, 0};
    uint64_t elements = 1;
    for (uint64_t d : t.shape) elements *= d;
    info.bytes = dtype_bytes(t.dtype, elements);
    offset += info.bytes + gguf_padding(info.bytes, alignment);
    infos.push_back(std::move(info));
  }
  return infos;
}

std::string gguf_header(const GgufMetadata& metadata, const std::vector<GgufTensorInfo>& tensors, uint64_t alignment) {
  HeaderWriter w;
  w.put<uint32_t>(0x46554747);  // "GGUF"
  w.put<uint32_t>(3);
  w.put<uint64_t>(tensors.size());
  w.put<uint64_t>(metadata.size());
  std::set<std::string_view> keys;
  for (const auto& kv : metadata) {
    if (!keys.insert(kv.key).second) fail(ErrorKind::kUsage, "GGUF key \"{}\" would be written twice", kv.key);
    w.string(kv.key);
    w.value(kv.value);
  }
  for (const auto& t : tensors) {
    w.string(t.name);
    w.put<uint32_t>(static_cast<uint32_t>(t.ne.empty() ? 1 : t.ne.size()));
    if (t.ne.empty()) w.put<uint64_t>(1);
    for (uint64_t d : t.ne) w.put<uint64_t>(d);
    w.put<uint32_t>(t.type);
    w.put<uint64_t>(t.offset);
  }
  return pad_to(w.take(), alignment);
}

}  // namespace rvec
