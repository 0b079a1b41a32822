/*
 * Airlock's one native part: sendfile(2) from a file to a TCP socket, so a blob goes from the page cache
 * to the socket without being copied into the process and back (what Go's io.Copy does when it meets an
 * *os.File). Node has no API for it.
 *
 * JS: send(socketFd, fileFd, position, length, cancelFlag, callback, copy) → undefined
 *   - socketFd, fileFd: descriptors the caller keeps open until the callback; both are dup'ed here, so the
 *     thread never writes to a number the caller closed and the system reused.
 *   - cancelFlag: an Int32Array of length 1; storing a non-zero value stops the send within 200 ms.
 *   - callback(error, sent): error is null, or a string: an errno name ("EPIPE"), "ECANCELED", or "EOF"
 *     when the file ended before `length` bytes; sent is the number of bytes handed to the socket.
 *   - copy (optional, default false): read the file into a 1 MiB buffer and write that to the socket
 *     instead of sendfile. It costs a copy, but on some kernels a loopback reader takes written bytes
 *     much faster than sent pages (Linux 6.18 on the benchmark VM: 1.7-2.2 GB/s against 1.0-1.1).
 * Each send runs on a thread of its own (not libuv's pool: a send waits for a slow reader, and four
 * such waits would stall every file operation of the process), with every signal blocked, and reports
 * back through a thread-safe function. The caller must not write to the socket itself until the
 * callback ran.
 *
 * Main thread only: when a worker thread's environment is torn down, node frees the thread-safe
 * function and the cancel flag's memory while a send may still run, so the JS side never loads this in
 * a worker (src/oci/kernel-send.ts).
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

/* Longest wait for the socket before the cancel flag is looked at again. */
#define POLL_SLICE_MS 200
/* At most this much per sendfile call, so the cancel flag is seen between calls. */
#define CALL_BYTES (8 * 1024 * 1024)
/* The buffer of a copying send. */
#define COPY_BYTES (1024 * 1024)

typedef struct {
  int socket_fd;
  int file_fd;
  off_t position;
  size_t length;
  size_t sent;
  /* 0, an errno, or -1 for a file that ended early. */
  int error;
  int32_t *cancel;
  /* Read and write through this buffer (COPY_BYTES) instead of sendfile; NULL for sendfile. */
  char *buffer;
  napi_ref cancel_ref;
  napi_threadsafe_function done;
} Job;

static int cancelled(const Job *job) { return __atomic_load_n(job->cancel, __ATOMIC_SEQ_CST) != 0; }

/* Waits until the socket takes bytes again (or POLL_SLICE_MS passed); 0, or an errno. */
static int wait_writable(const Job *job) {
  struct pollfd wait = {.fd = job->socket_fd, .events = POLLOUT, .revents = 0};
  if (poll(&wait, 1, POLL_SLICE_MS) < 0 && errno != EINTR) return errno;
  /* A socket in error wakes the poll; the next write or sendfile call reports the error. */
  return 0;
}

/* After a call that moved nothing: 1 to call again (it was interrupted, or the socket takes bytes
 * again), else 0 with job->error set. */
static int may_retry(Job *job, int error) {
  if (error == EINTR) return 1;
  if (error == EAGAIN) error = wait_writable(job);
  if (error == 0) return 1;
  job->error = error;
  return 0;
}

/* The copying send: the file in COPY_BYTES pieces through the job's buffer; sets job->error on failure. */
static void copy_all(Job *job) {
  char *buffer = job->buffer;
  while (job->sent < job->length && job->error == 0) {
    size_t left = job->length - job->sent;
    ssize_t got = pread(job->file_fd, buffer, left < COPY_BYTES ? left : COPY_BYTES, job->position);
    if (got < 0) {
      if (errno != EINTR) job->error = errno;
      continue;
    }
    if (got == 0) {
      job->error = -1;
      break;
    }
    job->position += got;
    size_t at = 0;
    while (at < (size_t)got) {
      if (cancelled(job)) {
        job->error = ECANCELED;
        break;
      }
      ssize_t put = write(job->socket_fd, buffer + at, (size_t)got - at);
      if (put > 0) {
        at += (size_t)put;
        job->sent += (size_t)put;
        continue;
      }
      if (!may_retry(job, put < 0 ? errno : EAGAIN)) break;
    }
  }
}

static void *run(void *arg) {
  Job *job = arg;
  if (job->buffer != NULL) copy_all(job);
  while (job->buffer == NULL && job->sent < job->length) {
    if (cancelled(job)) {
      job->error = ECANCELED;
      break;
    }
    size_t left = job->length - job->sent;
    ssize_t n = sendfile(job->socket_fd, job->file_fd, &job->position, left < CALL_BYTES ? left : CALL_BYTES);
    if (n > 0) {
      job->sent += (size_t)n;
      continue;
    }
    if (n == 0) {
      job->error = -1;
      break;
    }
    if (!may_retry(job, errno)) break;
  }
  /* `finish` may free the job as soon as it is queued: keep the function in a local. */
  napi_threadsafe_function done = job->done;
  napi_call_threadsafe_function(done, job, napi_tsfn_blocking);
  napi_release_threadsafe_function(done, napi_tsfn_release);
  return NULL;
}

/* errno names for the errors a send can meet; others are reported as EIO. (strerrorname_np would
 * do, but only glibc 2.32 and later have it.) */
static const char *error_name(int error) {
  switch (error) {
    case -1: return "EOF";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ECANCELED: return "ECANCELED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case ENETDOWN: return "ENETDOWN";
    case ENOTCONN: return "ENOTCONN";
    case ENOTSOCK: return "ENOTSOCK";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EAGAIN: return "EAGAIN";
    case EOVERFLOW: return "EOVERFLOW";
    case ESPIPE: return "ESPIPE";
    default: return "EIO";
  }
}

/* On the JS thread, once the send thread is done: close the copies, report, free. */
static void finish(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  Job *job = data;
  close(job->socket_fd);
  close(job->file_fd);
  free(job->buffer);
  if (env != NULL) {
    napi_delete_reference(env, job->cancel_ref);
    napi_value args[2], global;
    if (job->error == 0) napi_get_null(env, &args[0]);
    else napi_create_string_utf8(env, error_name(job->error), NAPI_AUTO_LENGTH, &args[0]);
    napi_create_double(env, (double)job->sent, &args[1]);
    napi_get_global(env, &global);
    napi_call_function(env, global, callback, 2, args, NULL);
  }
  free(job);
}

/* Frees a job whose thread never started: its descriptor copies, its buffer, itself. */
static void discard(Job *job) {
  if (job->socket_fd >= 0) close(job->socket_fd);
  if (job->file_fd >= 0) close(job->file_fd);
  free(job->buffer);
  free(job);
}

static napi_value fail(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

static napi_value send(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value args[7];
  if (napi_get_cb_info(env, info, &argc, args, NULL, NULL) != napi_ok || argc < 6 || argc > 7)
    return fail(env,
                "send(socketFd, fileFd, position, length, cancelFlag, callback, copy) takes 6 or 7 arguments");
  int32_t socket_fd, file_fd;
  int64_t position, length;
  if (napi_get_value_int32(env, args[0], &socket_fd) != napi_ok || socket_fd < 0 ||
      napi_get_value_int32(env, args[1], &file_fd) != napi_ok || file_fd < 0)
    return fail(env, "socketFd and fileFd must be open descriptors");
  if (napi_get_value_int64(env, args[2], &position) != napi_ok || position < 0 ||
      napi_get_value_int64(env, args[3], &length) != napi_ok || length < 0)
    return fail(env, "position and length must be non-negative integers");
  napi_typedarray_type type;
  size_t count;
  void *flag;
  bool is_typed_array = false;
  napi_is_typedarray(env, args[4], &is_typed_array);
  if (!is_typed_array || napi_get_typedarray_info(env, args[4], &type, &count, &flag, NULL, NULL) != napi_ok ||
      type != napi_int32_array || count < 1)
    return fail(env, "cancelFlag must be an Int32Array");
  napi_valuetype kind;
  if (napi_typeof(env, args[5], &kind) != napi_ok || kind != napi_function)
    return fail(env, "callback must be a function");
  bool copy = false;
  if (argc == 7 && napi_get_value_bool(env, args[6], &copy) != napi_ok)
    return fail(env, "copy must be a boolean");

  Job *job = calloc(1, sizeof(Job));
  if (job == NULL) return fail(env, "out of memory");
  job->position = (off_t)position;
  job->length = (size_t)length;
  job->cancel = flag;
  job->socket_fd = -1;
  job->file_fd = -1;
  /* Allocated here, so that a copying send that cannot have its buffer does not start (the caller then
   * sends another way) rather than fail after the head went out. */
  if (copy && (job->buffer = malloc(COPY_BYTES)) == NULL) {
    discard(job);
    napi_throw_error(env, "ENOMEM", "no memory for the send's buffer");
    return NULL;
  }
  job->socket_fd = fcntl(socket_fd, F_DUPFD_CLOEXEC, 0);
  job->file_fd = job->socket_fd < 0 ? -1 : fcntl(file_fd, F_DUPFD_CLOEXEC, 0);
  if (job->file_fd < 0) {
    int error = errno;
    discard(job);
    napi_throw_error(env, error_name(error), strerror(error));
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "airlock-sendfile", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, args[4], 1, &job->cancel_ref) != napi_ok) {
    discard(job);
    return fail(env, "could not set up the send");
  }
  if (napi_create_threadsafe_function(env, args[5], NULL, name, 0, 1, NULL, NULL, NULL, finish, &job->done) !=
      napi_ok) {
    napi_delete_reference(env, job->cancel_ref);
    discard(job);
    return fail(env, "could not set up the send");
  }
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attributes, 64 * 1024);
  /* The thread starts with every signal blocked (it inherits this thread's mask, restored after). */
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before);
  pthread_t thread;
  int error = pthread_create(&thread, &attributes, run, job);
  pthread_sigmask(SIG_SETMASK, &before, NULL);
  pthread_attr_destroy(&attributes);
  if (error != 0) {
    napi_release_threadsafe_function(job->done, napi_tsfn_abort);
    napi_delete_reference(env, job->cancel_ref);
    discard(job);
    napi_throw_error(env, error_name(error), strerror(error));
    return NULL;
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value function;
  napi_create_function(env, "send", NAPI_AUTO_LENGTH, send, NULL, &function);
  napi_set_named_property(env, exports, "send", function);
  return exports;
}
