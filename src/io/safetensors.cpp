#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "base/error.hpp"
#include "base/hash.hpp"
#include "base/json.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"

namespace rvec {
namespace {

// A SAX handler that accepts exactly the safetensors header grammar:
//   { "<name>": {"dtype": S, "shape": [U...], "data_offsets": [U, U]}, ...,
//     "__metadata__": {S: S, ...} | null }
// Anything else (duplicate keys at any level, unknown fields, negative or
// fractional numbers, wrong types) is rejected with a message naming the
// tensor and field. Parsing stops at the first problem.
class HeaderSax {
 public:
  using json = nlohmann::json;
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  HeaderSax(std::string_view origin, SafetensorsHeader& out) : origin_(origin), out_(out) {}

  bool null() {
    if (state_ == State::kTopValue && in_metadata_key_) {
      in_metadata_key_ = false;
      state_ = State::kTopKey;
      return true;
    }
    return unexpected("null");
  }
  bool boolean(bool) { return unexpected("a boolean"); }
  bool number_integer(number_integer_t) {
    return unexpected("a negative number");
  }
  bool number_float(number_float_t, const string_t& text) {
    return unexpected(fmt::format("the number {} (only integers 0..2^64-1 are allowed)", text));
  }
  bool binary(binary_t&) { return unexpected("binary data"); }

  bool number_unsigned(number_unsigned_t value) {
    if (state_ == State::kShapeItem) {
      current_.shape.push_back(value);
      return true;
    }
    if (state_ == State::kOffsetItem) {
      if (offsets_.size() == 2) field_error("data_offsets", "has more than 2 entries");
      offsets_.push_back(value);
      return true;
    }
    return unexpected("a number");
  }

  bool string(string_t& value) {
    switch (state_) {
      case State::kMetaValue:
        out_.metadata[meta_key_] = value;
        state_ = State::kMetaKey;
        return true;
      case State::kEntryValue:
        if (field_ != "dtype") return unexpected("a string");
        {
          const auto dtype = parse_dtype(value);
          if (!dtype) {
            field_error("dtype", fmt::format("is \"{}\", not a safetensors dtype (names are case-sensitive, e.g. BF16)",
                                             printable(value)));
          }
          current_.dtype = *dtype;
          have_dtype_ = true;
        }
        state_ = State::kEntryKey;
        return true;
      default:
        return unexpected("a string");
    }
  }

  bool start_object(std::size_t) {
    switch (state_) {
      case State::kStart:
        state_ = State::kTopKey;
        return true;
      case State::kTopValue:
        if (in_metadata_key_) {
          state_ = State::kMetaKey;
          meta_keys_.clear();
          return true;
        }
        state_ = State::kEntryKey;
        current_ = TensorInfo{};
        current_.name = entry_name_;
        entry_fields_.clear();
        have_dtype_ = have_shape_ = have_offsets_ = false;
        offsets_.clear();
        return true;
      default:
        return unexpected("an object");
    }
  }

  bool key(string_t& key) {
    switch (state_) {
      case State::kTopKey:
        if (!top_keys_.insert(key).second) {
          if (key == "__metadata__") fail_here("\"__metadata__\" appears twice");
          fail_here(fmt::format("duplicate tensor name \"{}\"", printable(key)));
        }
        in_metadata_key_ = key == "__metadata__";
        if (!in_metadata_key_) check_tensor_name(key);
        entry_name_ = key;
        state_ = State::kTopValue;
        return true;
      case State::kEntryKey:
        if (key != "dtype" && key != "shape" && key != "data_offsets") {
          fail_here(fmt::format("tensor \"{}\" has unknown field \"{}\"", printable(entry_name_),
                                printable(key)));
        }
        if (!entry_fields_.insert(key).second) field_error(key, "appears twice");
        field_ = key;
        state_ = State::kEntryValue;
        return true;
      case State::kMetaKey:
        if (!meta_keys_.insert(key).second) {
          fail_here(fmt::format("__metadata__ key \"{}\" appears twice", printable(key)));
        }
        meta_key_ = key;
        state_ = State::kMetaValue;
        return true;
      default:
        return unexpected("a key");
    }
  }

  bool end_object() {
    switch (state_) {
      case State::kTopKey:
        state_ = State::kDone;
        return true;
      case State::kMetaKey:
        in_metadata_key_ = false;
        state_ = State::kTopKey;
        return true;
      case State::kEntryKey:
        finish_entry();
        state_ = State::kTopKey;
        return true;
      default:
        return unexpected("the end of an object");
    }
  }

  bool start_array(std::size_t) {
    if (state_ == State::kEntryValue && field_ == "shape") {
      state_ = State::kShapeItem;
      have_shape_ = true;
      return true;
    }
    if (state_ == State::kEntryValue && field_ == "data_offsets") {
      state_ = State::kOffsetItem;
      have_offsets_ = true;
      return true;
    }
    return unexpected("an array");
  }

  bool end_array() {
    if (state_ == State::kOffsetItem && offsets_.size() != 2) {
      field_error("data_offsets", fmt::format("has {} entries, not 2", offsets_.size()));
    }
    if (state_ != State::kShapeItem && state_ != State::kOffsetItem) return unexpected("]");
    state_ = State::kEntryKey;
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    fail_here(fmt::format("header is not valid JSON at byte {} ({})", position, json_error_reason(e.what())));
  }

 private:
  enum class State {
    kStart, kTopKey, kTopValue, kMetaKey, kMetaValue, kEntryKey, kEntryValue,
    kShapeItem, kOffsetItem, kDone,
  };

  [[noreturn]] void fail_here(const std::string& what) {
    bad_input("{}: invalid safetensors header ({})", origin_, what);
  }

  [[noreturn]] void field_error(std::string_view field, const std::string& what) {
    fail_here(fmt::format("tensor \"{}\" field \"{}\" {}", printable(entry_name_), field, what));
  }

  bool unexpected(const std::string& what) {
    switch (state_) {
      case State::kStart:
      case State::kDone:
        fail_here(fmt::format("the header must be one JSON object, found {}", what));
      case State::kTopValue:
        fail_here(fmt::format("tensor \"{}\" must be an object, found {}", printable(entry_name_), what));
      case State::kMetaValue:
        if (meta_key_ == "shape" || meta_key_ == "data_offsets") {
          fail_here("a tensor may not be named \"__metadata__\"");
        }
        fail_here(fmt::format("__metadata__ must map strings to strings; key \"{}\" holds {}",
                              printable(meta_key_), what));
      case State::kEntryValue:
        field_error(field_, fmt::format("has the wrong type ({})", what));
      case State::kShapeItem:
        field_error("shape", fmt::format("must hold integers 0..2^64-1, found {}", what));
      case State::kOffsetItem:
        field_error("data_offsets", fmt::format("must hold integers 0..2^64-1, found {}", what));
      default:
        fail_here(fmt::format("unexpected {}", what));
    }
  }

  void check_tensor_name(const std::string& name) {
    if (name.empty()) fail_here("a tensor has an empty name");
    if (has_control_character(name)) {
      fail_here(fmt::format("tensor name \"{}\" contains a control character", printable(name)));
    }
  }

  void finish_entry() {
    if (!have_dtype_) field_error("dtype", "is missing");
    if (!have_shape_) field_error("shape", "is missing");
    if (!have_offsets_) field_error("data_offsets", "is missing");
    current_.begin = offsets_[0];
    current_.end = offsets_[1];
    out_.tensors.push_back(std::move(current_));
  }

  std::string_view origin_;
  SafetensorsHeader& out_;
  State state_ = State::kStart;
  std::set<std::string> top_keys_, entry_fields_, meta_keys_;
  std::string entry_name_, field_, meta_key_;
  bool in_metadata_key_ = false;
  TensorInfo current_;
  std::vector<uint64_t> offsets_;
  bool have_dtype_ = false, have_shape_ = false, have_offsets_ = false;
};

void check_layout(SafetensorsHeader& header, uint64_t file_size, std::string_view origin) {
  for (const auto& t : header.tensors) {
    if (t.end < t.begin) {
      bad_input("{}: tensor \"{}\" has data_offsets [{}, {}] that end before they begin", origin,
                printable(t.name), t.begin, t.end);
    }
    const uint64_t expected = checked_byte_size(t.dtype, t.shape, origin, t.name);
    if (t.end - t.begin != expected) {
      bad_input("{}: tensor \"{}\" spans {} bytes but {} {} needs {}", origin, printable(t.name),
                t.end - t.begin, dtype_name(t.dtype), shape_string(t.shape), expected);
    }
  }
  std::stable_sort(header.tensors.begin(), header.tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& t : header.tensors) {
    if (t.begin != cursor) {
      bad_input("{}: tensor \"{}\" starts at data byte {} but the previous tensor ends at {} ({})",
                origin, printable(t.name), t.begin, cursor,
                t.begin > cursor ? "a gap" : "overlapping data");
    }
    cursor = t.end;
  }
  const uint64_t data_bytes = file_size - header.data_start();  // caller ensured >= 0
  if (cursor != data_bytes) {
    bad_input("{}: tensors end at data byte {} but the file holds {} data bytes ({})", origin,
              cursor, data_bytes, cursor < data_bytes ? "trailing bytes" : "truncated file");
  }
}

}  // namespace

uint64_t TensorInfo::element_count() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

const TensorInfo* SafetensorsHeader::find(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

uint64_t checked_byte_size(DType dtype, std::span<const uint64_t> shape, std::string_view origin,
                           std::string_view name) {
  uint64_t elements = 1;
  for (uint64_t d : shape) {
    if (__builtin_mul_overflow(elements, d, &elements)) {
      bad_input("{}: tensor \"{}\" shape {} overflows 64 bits", origin, printable(name),
                shape_string(shape));
    }
  }
  uint64_t bits = 0;
  if (__builtin_mul_overflow(elements, uint64_t{dtype_bits(dtype)}, &bits)) {
    bad_input("{}: tensor \"{}\" byte size overflows 64 bits", origin, printable(name));
  }
  if (bits % 8 != 0) {
    bad_input("{}: tensor \"{}\" holds {} {} elements, which do not end on a byte boundary",
              origin, printable(name), elements, dtype_name(dtype));
  }
  return bits / 8;
}

uint64_t parse_header_length(std::span<const std::byte> first8, uint64_t file_size,
                             std::string_view origin) {
  if (file_size < 8 || first8.size() < 8) {
    bad_input("{}: not a safetensors file (only {} bytes, shorter than the 8-byte length prefix)",
              origin, file_size);
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<uint64_t>(first8[i]);
  if (n > kMaxHeaderBytes) {
    bad_input("{}: not a safetensors file (header length {} exceeds the {}-byte limit)", origin, n,
              kMaxHeaderBytes);
  }
  if (n > file_size - 8) {
    bad_input("{}: not a safetensors file (header length {} runs past the end of the {}-byte file)",
              origin, n, file_size);
  }
  return n;
}

SafetensorsHeader parse_header(std::string_view json, uint64_t file_size, std::string_view origin) {
  if (const auto bad = first_invalid_utf8(json)) {
    bad_input("{}: invalid safetensors header (not valid UTF-8 at byte {})", origin, *bad);
  }
  const auto last = json.find_last_not_of(" \t\r\n");
  if (last != std::string_view::npos && json[last] == '\0') {
    bad_input("{}: invalid safetensors header (padded with NUL bytes; the format pads with spaces)",
              origin);
  }
  SafetensorsHeader header;
  header.header_bytes = json.size();
  header.json_hash = fnv1a64(json);
  HeaderSax sax(origin, header);
  nlohmann::json::sax_parse(json, &sax, nlohmann::json::input_format_t::json, true);
  check_layout(header, file_size, origin);
  return header;
}

SafetensorsHeader parse_safetensors_buffer(std::span<const std::byte> file, std::string_view origin) {
  const uint64_t n = parse_header_length(file.first(std::min<size_t>(8, file.size())), file.size(), origin);
  const auto* chars = reinterpret_cast<const char*>(file.data() + 8);
  return parse_header(std::string_view(chars, n), file.size(), origin);
}

// --- SafetensorsFile ---------------------------------------------------------

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  FileDescriptor fd = open_regular_file(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_errno(fmt::format("{}: cannot stat", path));
  const auto size = static_cast<uint64_t>(st.st_size);
  std::byte first8[8] = {};
  if (size >= 8) read_exactly_at(fd.get(), std::span(first8, 8), 0, path);
  const uint64_t n = parse_header_length(first8, size, path);
  std::string json(n, '\0');
  read_exactly_at(fd.get(), std::as_writable_bytes(std::span(json.data(), n)), 8, path);
  auto header = parse_header(json, size, path);
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);  // larger kernel readahead
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(path, fd.release(), size, std::move(header)));
}

namespace {

uint64_t modification_ns(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail_errno(fmt::format("{}: cannot stat", path));
  return static_cast<uint64_t>(st.st_mtim.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(st.st_mtim.tv_nsec);
}

}  // namespace

SafetensorsFile::SafetensorsFile(std::string path, int fd, uint64_t size, SafetensorsHeader header)
    : path_(std::move(path)),
      fd_(fd),
      file_size_(size),
      modified_ns_(modification_ns(fd_, path_)),
      header_(std::move(header)) {}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(const_cast<std::byte*>(mapping_), file_size_);
  ::close(fd_);
}

void SafetensorsFile::read(const TensorInfo& tensor, uint64_t offset, std::span<std::byte> out) const {
  if (offset > tensor.byte_size() || out.size() > tensor.byte_size() - offset) {
    bad_input("{}: read of {} bytes at offset {} is outside tensor \"{}\" ({} bytes)", path_,
              out.size(), offset, tensor.name, tensor.byte_size());
  }
  read_exactly_at(fd_, out, header_.data_start() + tensor.begin + offset, path_);
}

void SafetensorsFile::prefetch(const TensorInfo& tensor, uint64_t offset, uint64_t length) const {
  if (offset >= tensor.byte_size()) return;
  length = std::min(length, tensor.byte_size() - offset);
  const uint64_t at = header_.data_start() + tensor.begin + offset;
  // The range's last byte already cached (read with RWF_NOWAIT, which fails
  // rather than wait for the disk): the kernel's readahead got there first,
  // and asking again would only walk the cached pages.
  std::byte last{};
  iovec probe{&last, 1};
  if (length > 0 && ::preadv2(fd_, &probe, 1, static_cast<off_t>(at + length - 1), RWF_NOWAIT) == 1) return;
  ::posix_fadvise(fd_, static_cast<off_t>(at), static_cast<off_t>(length), POSIX_FADV_WILLNEED);
}

std::span<const std::byte> SafetensorsFile::map(const TensorInfo& tensor) const {
  if (tensor.byte_size() == 0) return {};
  if (mapping_ == nullptr) {
    void* p = ::mmap(nullptr, file_size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) fail_errno(fmt::format("{}: cannot map", path_));
    mapping_ = static_cast<const std::byte*>(p);
  }
  check_unchanged();
  return {mapping_ + header_.data_start() + tensor.begin, tensor.byte_size()};
}

void SafetensorsFile::check_unchanged() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail_errno(fmt::format("{}: cannot stat", path_));
  if (static_cast<uint64_t>(st.st_size) != file_size_) {
    bad_input("{}: file changed size while rvec was reading it ({} bytes, now {})", path_,
              file_size_, static_cast<uint64_t>(st.st_size));
  }
  if (modification_ns(fd_, path_) != modified_ns_) {
    bad_input("{}: file was modified while rvec was reading it; run again once it is stable", path_);
  }
}

}  // namespace rvec
