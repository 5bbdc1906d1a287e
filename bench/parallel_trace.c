/* A timeline of TVM's parallel launches (bench/parallel_trace.py loads this library).
 *
 * A TVM-compiled library calls its runtime's thread pool through a function pointer it
 * exports, `__TVMBackendParallelLaunch`. parallel_trace.py points it at `trace_launch`,
 * which records (TSC, kind, task, kernel lambda) for the launch's start and end and,
 * through a trampoline lambda, for every task's start and end on whichever thread runs
 * it, then calls the runtime's launch (`trace_real_launch`). Records go to a fixed
 * buffer (TRACE_CAPACITY, further ones dropped and counted); nothing is printed here.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <x86intrin.h>

typedef struct {
  void *sync_handle;
  int32_t num_task;
} TraceEnv;
typedef int (*TraceLambda)(int task_id, TraceEnv *env, void *cdata);
typedef int (*TraceLaunch)(TraceLambda lambda, void *cdata, int num_task);

enum { LAUNCH_START = 0, LAUNCH_END = 1, TASK_START = 2, TASK_END = 3 };
#define TRACE_CAPACITY 2000000

typedef struct {
  uint64_t tsc;
  void *lambda;
  int32_t kind;
  int32_t task; /* task id; for launches the requested task count (0: all threads) */
} TraceRecord;

TraceLaunch trace_real_launch = 0;
static TraceRecord records[TRACE_CAPACITY];
static atomic_long count = 0;

static void record(int kind, int task, void *lambda) {
  long i = atomic_fetch_add(&count, 1);
  if (i < TRACE_CAPACITY) {
    records[i].tsc = __rdtsc();
    records[i].lambda = lambda;
    records[i].kind = kind;
    records[i].task = task;
  }
}

typedef struct {
  TraceLambda lambda;
  void *cdata;
} TraceClosure;

static int trampoline(int task_id, TraceEnv *env, void *cdata) {
  TraceClosure *closure = (TraceClosure *)cdata;
  record(TASK_START, task_id, (void *)closure->lambda);
  int result = closure->lambda(task_id, env, closure->cdata);
  record(TASK_END, task_id, (void *)closure->lambda);
  return result;
}

int trace_launch(TraceLambda lambda, void *cdata, int num_task) {
  TraceClosure closure = {lambda, cdata};
  record(LAUNCH_START, num_task, (void *)lambda);
  int result = trace_real_launch(trampoline, &closure, num_task);
  record(LAUNCH_END, num_task, (void *)lambda);
  return result;
}

long trace_count(void) { return atomic_load(&count); }
long trace_capacity(void) { return TRACE_CAPACITY; }
void trace_reset(void) { atomic_store(&count, 0); }
const TraceRecord *trace_records(void) { return records; }
uint64_t trace_now(void) { return __rdtsc(); }
