// ZeroedPages<T>: a fixed-length array of T, zero at the start, in an
// anonymous memory mapping of its own, in small pages (transparent huge
// pages are declined). The kernel supplies each page on its first write and
// takes every page back when the array is destroyed, so large arrays that
// are only partly written (histograms) cost resident memory only for what
// was written and leave no holes in the heap.
// An empty array maps nothing. Owns its mapping; movable, not copyable; not
// thread-safe (one thread at a time).
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>

namespace rvec {

namespace zeroed_pages_detail {
// `count` elements of `element_bytes` each; throws an error naming the size
// when the mapping fails or the size does not fit in size_t.
void* map_zeroed(size_t count, size_t element_bytes);
void unmap(void* data, size_t bytes);
}  // namespace zeroed_pages_detail

template <class T>
class ZeroedPages {
  static_assert(std::is_trivial_v<T>, "all-zero bytes must be a valid T");

 public:
  ZeroedPages() = default;
  explicit ZeroedPages(size_t size)
      : data_(size == 0 ? nullptr : static_cast<T*>(zeroed_pages_detail::map_zeroed(size, sizeof(T)))), size_(size) {}
  ~ZeroedPages() { release(); }

  ZeroedPages(ZeroedPages&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  ZeroedPages& operator=(ZeroedPages&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ZeroedPages(const ZeroedPages&) = delete;
  ZeroedPages& operator=(const ZeroedPages&) = delete;

  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<T> span() { return {data_, size_}; }
  std::span<const T> span() const { return {data_, size_}; }

 private:
  void release() {
    if (data_) zeroed_pages_detail::unmap(data_, size_ * sizeof(T));
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rvec
