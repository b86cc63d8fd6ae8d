"""Failures that silently cost accuracy in an earlier JAX implementation of these recipes, what in
flaxnets makes each impossible, and the test that proves it. docs/RECIPES.md numbers and prints them;
code and tests cite them as "docs/RECIPES.md pitfall N"."""

from typing import NamedTuple


class Pitfall(NamedTuple):
    """One pitfall: what went wrong, the code that prevents it, and the tests (path::function)."""

    title: str
    what: str
    guard: str
    tests: tuple[str, ...]


PITFALLS = (
    Pitfall("Label smoothing that smooths nothing",
            "The smoothed labels were computed, but the unsmoothed ones were passed to the loss.",
            "`flaxnets.train.losses.cross_entropy_loss` smooths the very targets it scores.",
            ("tests/train/test_losses.py::test_label_smoothing_changes_loss_by_analytic_amount",)),
    Pitfall("L2 at half strength",
            "L2 decay was added to the gradient as `0.5 * wd * w` instead of `wd * w` "
            "(the gradient of `0.5 * wd * ||w||^2`, the TF references' `wd * l2_loss`).",
            "`flaxnets.train.optim` adds `l2 * w` to the gradient.",
            ("tests/train/test_optim.py::test_l2_is_added_at_full_strength_and_masked_by_kind",)),
    Pitfall("A decay that starts late",
            "In the TF references the exponential decay counts from step 0 and the warmup only replaces "
            "the first steps; optax's `warmup_exponential_decay_schedule` starts decaying after the warmup "
            "(5 epochs late, about 6% too high a learning rate for the whole run), and "
            "`transition_begin=warmup_steps` made it 10 epochs late.",
            "Every decay counts from step 0 and the warmup replaces its first steps "
            "(`flaxnets.optimizers.tf_style_warmup`; `warmup_target` says where the ramp ends).",
            ("tests/train/test_schedules.py::test_efficientnet_tpu_exponential_with_warmup_replacing_first_steps",
             "tests/train/test_schedules.py::test_mobilenet_v3_small_tfvision_warmup_to_schedule_value")),
    Pitfall("An evaluation that drops and repeats images",
            "Evaluation batches with drop_remainder and repeat: 848 of the 50,000 validation images were "
            "never evaluated, some were counted twice, and the window moved between evaluations.",
            "Evaluation pads the last batch and masks the padding out (`flaxnets.train.evaluate`).",
            ("tests/train/test_loop.py::test_evaluation_counts_every_validation_image_once",
             "tests/train/test_step.py::test_eval_step_counts_only_masked_in_examples")),
    Pitfall("Inputs never normalised",
            "A pipeline variant fed 0-255 floats to the network.",
            "The train and eval steps normalise uint8 images on the device with the run's mean/std.",
            ("tests/train/test_step.py::test_step_normalises_uint8_images_with_the_given_mean_and_std",)),
    Pitfall("EMA per micro-step",
            "Under gradient accumulation the EMA was updated on every micro-step instead of every optimizer step.",
            "The train step updates the EMA once per optimizer step.",
            ("tests/train/test_step.py::test_ema_is_updated_once_per_optimizer_step_under_grad_accumulation",
             "tests/train/test_accumulation.py::test_schedule_optimizer_count_and_ema_advance_once_per_optimizer_step")),
    Pitfall("Low-precision logits and loss",
            "Logits returned in bfloat16 and the loss computed in low precision, a known cause of collapse.",
            "The models return float32 logits and the step refuses anything else.",
            ("tests/train/test_step.py::test_bfloat16_compute_gives_float32_logits_and_loss",
             "tests/train/test_step.py::test_low_precision_logits_are_refused",
             "tests/train/test_losses.py::test_bfloat16_logits_give_float32_loss")),
    Pitfall("Pooling that keeps its dimensions",
            "`jnp.mean(x, axis=(1, 2), keepdims=True)` before the classifier: NaN, no learning.",
            "`flaxnets.models.blocks.ConvNet` pools to [batch, channels] before the classifier.",
            ("tests/train/test_loop.py::test_the_loss_falls",)),
    Pitfall("Architecture slips",
            "ReLU6 typed where ReLU was meant (and the reverse); a width multiplier that scaled only the "
            "stem and head; the EfficientNet head (1280) not scaled with the width coefficient (wrong from B2 up).",
            "One block builder reads typed stage tables; counts are held to Keras / timm to the unit.",
            ("tests/models/test_architecture.py::test_mobilenet_v3_activations_follow_the_table",
             "tests/models/test_architecture.py::test_width_multiplier_scales_every_conv",
             "tests/models/test_architecture.py::test_efficientnet_head_width_scales_with_width_coefficient")),
    Pitfall("Masks by layer name",
            "Weight-decay masks matched auto-generated layer names, so renaming a layer changed the recipe.",
            "Masks select parameter kinds, decided by module type (`flaxnets.models.param_kinds`).",
            ("tests/models/test_knobs.py::test_param_kinds_by_module_type",
             "tests/train/test_optim.py::test_l2_is_added_at_full_strength_and_masked_by_kind")),
    Pitfall("Sync BN that syncs nothing",
            "Cross-replica BatchNorm that only averaged the running statistics before evaluation.",
            "BatchNorm moments are computed over the global batch, or per explicit group (`model.bn_group_size`), "
            "inside the jitted step.",
            ("tests/train/test_loop.py::test_one_device_gives_the_losses_of_four",
             "tests/train/test_bn_groups.py::test_grouped_step_equals_the_mean_of_steps_over_each_group_alone")),
    Pitfall("Checkpoints from one process",
            "On multi-host runs checkpoints were saved from one process only, without data position or RNG.",
            "Every process takes part in saving; the data position and RNG are part of the checkpoint.",
            ("tests/train/test_checkpoint.py::test_round_trip_state_and_data_position",
             "tests/reliability/test_multiprocess.py::"
             "test_two_processes_train_and_resume_like_one_process_with_two_devices")),
)
