#include "base/zeroed_pages.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "base/error.hpp"

namespace rvec::zeroed_pages_detail {

void* map_zeroed(size_t count, size_t element_bytes) {
  if (count > SIZE_MAX / element_bytes) {
    fail(ErrorKind::kIo, "cannot map {} elements of {} bytes of memory: more bytes than an address holds", count,
         element_bytes);
  }
  const size_t bytes = count * element_bytes;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail(ErrorKind::kIo, "cannot map {} bytes of memory: {}", bytes, std::strerror(errno));
  // Small pages, also where transparent huge pages are on for every mapping:
  // one written count must not make 2 MiB resident. Only advice; a kernel
  // without it maps as it would.
  madvise(p, bytes, MADV_NOHUGEPAGE);
  return p;
}

void unmap(void* data, size_t bytes) { munmap(data, bytes); }

}  // namespace rvec::zeroed_pages_detail
