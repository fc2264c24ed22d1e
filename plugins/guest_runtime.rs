// The little runtime every plugin shares, pulled in with
// `include!("../../guest_runtime.rs")` at the top of the plugin's `lib.rs`.
//
// Plugins are `no_std` on wasm32 so that the component imports nothing at all: Rust's
// std for wasm32-wasip2 would add WASI imports (stdio for panic messages, environment,
// exit, polling) that the host would have to stub. Without std a plugin needs three
// things, defined here:
//
// - a global allocator: wasi-libc's `malloc` (linked statically; it only grows linear
//   memory and calls no WASI function);
// - `cabi_realloc`, the export the host calls to place lists and strings in the plugin's
//   memory (std provides it on wasip2; without std it is ours);
// - a panic handler: a panic becomes a trap, which the host reports as the plugin's error
//   for that window and then starts a fresh instance.
//
// On other targets (`cargo test` on the build machine) the plugin is an ordinary std crate
// and this file adds nothing, so its logic can be unit-tested natively.

#[cfg(target_arch = "wasm32")]
mod guest_runtime {
    use core::alloc::{GlobalAlloc, Layout};

    /// Alignment `malloc` guarantees on wasm32.
    const MALLOC_ALIGN: usize = 16;

    #[link(name = "c")]
    extern "C" {
        fn malloc(size: usize) -> *mut u8;
        fn aligned_alloc(align: usize, size: usize) -> *mut u8;
        fn realloc(ptr: *mut u8, size: usize) -> *mut u8;
        fn free(ptr: *mut u8);
    }

    struct LibcAllocator;

    unsafe impl GlobalAlloc for LibcAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGN {
                malloc(layout.size())
            } else {
                aligned_alloc(layout.align(), layout.size())
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            free(ptr)
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGN {
                return realloc(ptr, new_size);
            }
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                free(ptr);
            }
            new
        }
    }

    #[global_allocator]
    static ALLOCATOR: LibcAllocator = LibcAllocator;

    /// The canonical ABI's allocation entry point (same contract as wit-bindgen's).
    #[no_mangle]
    unsafe extern "C" fn cabi_realloc(
        old_ptr: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        let ptr = if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            ALLOCATOR.alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            ALLOCATOR.realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        };
        if ptr.is_null() {
            core::arch::wasm32::unreachable()
        }
        ptr
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        core::arch::wasm32::unreachable()
    }
}
