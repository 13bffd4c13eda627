#include "common/mapped_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <sys/mman.h>
#include <sys/stat.h>

namespace moeserve {

StatusOr<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const int64_t size = st.st_size;
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(err)));
    }
    data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

namespace {

int64_t page_size() {
  static const int64_t size = ::sysconf(_SC_PAGESIZE);
  return size;
}

}  // namespace

void MappedFile::populate(int64_t offset, int64_t n) const {
  MS_CHECK(offset >= 0 && n >= 0 && offset + n <= size_, path_, ": populate [", offset, ", +", n,
           ") outside the file");
  if (n == 0) return;
  const int64_t page = page_size();
  const int64_t begin = offset / page * page;
  // Advice only: failure changes nothing but speed.
  ::madvise(const_cast<uint8_t*>(data_) + begin, static_cast<size_t>(offset + n - begin),
            MADV_WILLNEED);
  volatile uint8_t sink = 0;
  for (int64_t p = offset; p < offset + n; p = (p / page + 1) * page) sink = sink | data_[p];
  (void)sink;
}

void MappedFile::release(int64_t offset, int64_t n) const {
  MS_CHECK(offset >= 0 && n >= 0 && offset + n <= size_, path_, ": release [", offset, ", +", n,
           ") outside the file");
  const int64_t page = page_size();
  const int64_t begin = (offset + page - 1) / page * page, end = (offset + n) / page * page;
  if (end <= begin) return;
  // A read-only private mapping of a file has only clean file pages, so this
  // discards nothing but residency.
  ::madvise(const_cast<uint8_t*>(data_) + begin, static_cast<size_t>(end - begin), MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
}

}  // namespace moeserve
